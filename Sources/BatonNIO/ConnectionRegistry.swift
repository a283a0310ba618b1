import NIOConcurrencyHelpers
import NIOCore

/// Every connection a worker accepted and has not closed yet, so a drain can reach each of them
/// and know when the last one is gone.
///
/// A connection is counted the moment it is accepted, before NIO has made a channel of it; the
/// drain event is sent both to the connections known when draining starts and to any registered
/// afterwards, so none can slip through and keep a keep-alive connection open.
public final class ConnectionRegistry: Sendable {
    private struct State {
        var open: [ObjectIdentifier: Connection] = [:]
        /// Accepted, not yet a channel.
        var settingUp = 0
        var draining = false
        /// One more at each start or end of a drain: a pacer still telling the connections of
        /// a drain that was called off stops.
        var drainEpoch = 0
        var handoff: ConnectionHandoff?
        var waiters: [CheckedContinuation<Void, Never>] = []
        /// Nothing open, nothing being set up.
        var isIdle: Bool { open.isEmpty && settingUp == 0 }
    }

    private struct Connection {
        var channel: any Channel
        /// The position of the listener it came from (nil: unknown).
        var listener: Int?
    }

    private let state = NIOLockedValueBox(State())

    /// An empty registry.
    public init() {}

    /// Connections accepted and not closed yet.
    public var openCount: Int { state.withLockedValue { $0.open.count + $0.settingUp } }

    /// Called by the `Acceptor` right after `accept(2)`.
    public func willAccept() {
        state.withLockedValue { $0.settingUp += 1 }
    }

    /// Called once the accepted connection is a channel; `listener` is the position of the
    /// listener it came from (nil: unknown).
    public func accepted(_ channel: any Channel, listener: Int? = nil) {
        let id = ObjectIdentifier(channel)
        let drain = state.withLockedValue { state -> (draining: Bool, handoff: ConnectionHandoff?) in
            state.settingUp -= 1
            state.open[id] = Connection(channel: channel, listener: listener)
            return (state.draining, state.handoff)
        }
        // The drain may have started while NIO was setting this connection up.
        if drain.draining { Self.sendDrain(to: channel, handoff: drain.handoff) }
        channel.closeFuture.whenComplete { _ in
            self.update { $0.open[id] = nil }
        }
    }

    /// Called when NIO could not make a channel of an accepted connection.
    public func acceptFailed() {
        update { $0.settingUp -= 1 }
    }

    private func update(_ change: (inout State) -> Void) {
        let waiters = state.withLockedValue { state -> [CheckedContinuation<Void, Never>] in
            change(&state)
            guard state.isIdle else { return [] }
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Starts draining every open connection (and any registered later), handing keep-alive
    /// connections over through `handoff` when there is one.
    ///
    /// With a hand-over, the connections it takes learn of the drain in random order, evenly over
    /// its `spread` (see `DrainPacer`): each goes to the next generation at that moment or at
    /// its first request boundary after it. The rest (a listener the next generation does not
    /// serve), and any connection registered later, learn of it at once.
    public func startDraining(handoff: ConnectionHandoff? = nil) {
        let (connections, epoch) = state.withLockedValue { state -> ([Connection], Int) in
            state.draining = true
            state.drainEpoch += 1
            state.handoff = handoff
            return (Array(state.open.values), state.drainEpoch)
        }
        guard let handoff else {
            for connection in connections { Self.sendDrain(to: connection.channel, handoff: nil) }
            return
        }
        var moving: [Connection] = []
        for connection in connections.shuffled() {
            if handoff.takes(listener: connection.listener) {
                moving.append(connection)
            } else {
                Self.sendDrain(to: connection.channel, handoff: handoff)
            }
        }
        Self.pace(DrainConnectionEvent(handoff: handoff), to: moving, over: handoff.spread) { [state] in
            state.withLockedValue { $0.draining && $0.drainEpoch == epoch }
        }
    }

    /// Calls the drain off (its successor died: this generation serves again): every open
    /// connection stops draining, and those not told yet are not told.
    ///
    /// A connection already closing (its last response said `Connection: close`), or already
    /// handed over, is gone anyway; every other one stays open as if no drain had begun.
    public func stopDraining() {
        let connections = state.withLockedValue { state -> [Connection] in
            state.draining = false
            state.drainEpoch += 1
            state.handoff = nil
            return Array(state.open.values)
        }
        for connection in connections {
            let channel = connection.channel
            channel.eventLoop.execute { channel.pipeline.fireUserInboundEventTriggered(ResumeConnectionEvent()) }
        }
    }

    /// Tells every open connection to close soon rather than at its moment of the drain's
    /// spread (``HurryDrainEvent``); returns how many are open.
    @discardableResult
    public func hurry() -> Int {
        let connections = state.withLockedValue { Array($0.open.values) }
        for connection in connections {
            let channel = connection.channel
            channel.eventLoop.execute { channel.pipeline.fireUserInboundEventTriggered(HurryDrainEvent()) }
        }
        return connections.count
    }

    /// Moves `percent` of the open connections (picked at random) to a canary through
    /// `handoff`, spread over `spread` like a drain's hand-over; returns how many were picked, of
    /// how many open. Each goes at its next request boundary, or stays if it cannot (see
    /// ``ShareConnectionEvent``).
    @discardableResult
    public func share(percent: Int, handoff: ConnectionHandoff, spread: TimeAmount) -> (picked: Int, of: Int) {
        let connections = state.withLockedValue { state -> [Connection] in
            state.draining ? [] : state.open.values.filter { handoff.takes(listener: $0.listener) }
        }
        let count = (connections.count * percent + 50) / 100
        Self.pace(ShareConnectionEvent(handoff: handoff), to: Array(connections.shuffled().prefix(count)), over: spread) { true }
        return (count, connections.count)
    }

    /// Tells `connections` of `event` evenly over `spread`, in the order given, one ``DrainPacer``
    /// per event loop, for as long as `due` says.
    private static func pace(_ event: any Sendable, to connections: [Connection], over spread: TimeAmount,
                             while due: @escaping @Sendable () -> Bool) {
        var paced: [ObjectIdentifier: (loop: any EventLoop, channels: [any Channel])] = [:]
        for connection in connections {
            let loop = connection.channel.eventLoop
            paced[ObjectIdentifier(loop), default: (loop, [])].channels.append(connection.channel)
        }
        for (loop, channels) in paced.values {
            DrainPacer.start(event, to: channels, on: loop, over: spread, while: due)
        }
    }

    /// Returns once no connection is open.
    public func waitUntilAllClosed() async {
        await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
            let done = state.withLockedValue { state -> Bool in
                if state.isIdle { return true }
                state.waiters.append(waiter)
                return false
            }
            if done { waiter.resume() }
        }
    }

    /// Closes every connection still open (the drain deadline has passed).
    public func closeAll() {
        for connection in state.withLockedValue({ Array($0.open.values) }) { connection.channel.close(promise: nil) }
    }

    private static func sendDrain(to channel: any Channel, handoff: ConnectionHandoff?) {
        channel.pipeline.fireUserInboundEventTriggered(DrainConnectionEvent(handoff: handoff))
    }
}
