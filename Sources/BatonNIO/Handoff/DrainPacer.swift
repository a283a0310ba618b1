import NIOCore

/// Tells the connections of one event loop that a drain with a hand-over has begun (or that they
/// are to move to a canary), a few at a time, evenly over the hand-over's spread, instead of all
/// at once.
///
/// Each connection goes to the next generation when it learns of the drain (or at its first
/// request boundary after that), so this pacing is the spread. Telling every connection at
/// once and letting each wait for its own moment put one task and one timer per connection on
/// the event loops in one go: with 4,096 connections the old generation's loops stalled for
/// about 40 ms at the takeover, and every request in flight waited (issue 13). The pacer costs
/// one timer per loop, firing every `spread / count` (1 to 10 ms).
final class DrainPacer {
    private let loop: any EventLoop
    private let channels: [any Channel]
    private let event: any Sendable
    private let start: NIODeadline
    private let spread: TimeAmount
    private let tick: TimeAmount
    private let due: @Sendable () -> Bool
    private var told = 0

    /// Starts pacing `event` to `channels`, which must all belong to `loop`, over `spread`, in
    /// the order given, for as long as `due` says (a drain called off stops it).
    static func start(_ event: any Sendable, to channels: [any Channel], on loop: any EventLoop, over spread: TimeAmount,
                      while due: @escaping @Sendable () -> Bool = { true }) {
        guard !channels.isEmpty else { return }
        loop.execute {
            DrainPacer(event, to: channels, on: loop, over: spread, while: due).tellDue()
        }
    }

    private init(_ event: any Sendable, to channels: [any Channel], on loop: any EventLoop, over spread: TimeAmount,
                 while due: @escaping @Sendable () -> Bool) {
        self.loop = loop
        self.channels = channels
        self.event = event
        self.due = due
        self.start = loop.now
        self.spread = spread
        let step = spread.nanoseconds / Int64(channels.count)
        self.tick = .nanoseconds(min(max(step, 1_000_000), 10_000_000))
    }

    /// On the loop: tells every connection whose moment has come, then waits for the next tick.
    private func tellDue() {
        guard due() else { return }
        let elapsed = (loop.now - start).nanoseconds
        let due = spread.nanoseconds <= 0 || elapsed >= spread.nanoseconds
            ? channels.count
            : min(channels.count, Int(Int64(channels.count) * elapsed / spread.nanoseconds) + 1)
        while told < due {
            // Already on the channel's loop: the event goes through the pipeline right here.
            channels[told].pipeline.fireUserInboundEventTriggered(event)
            told += 1
        }
        guard told < channels.count else { return }
        loop.assumeIsolated().scheduleTask(in: tick) { self.tellDue() }
    }
}
