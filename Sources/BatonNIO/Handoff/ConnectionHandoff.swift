import Baton
import CBaton
import Logging
import NIOConcurrencyHelpers
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// The draining side of a connection hand-over: the next generation's connection inbox (see
/// `Baton.ConnectionInbox`), open for a bounded window. Each ``ConnectionDrainHandler`` passes its
/// connection here once it is idle at a request boundary; the ``ConnectionSocketHandler`` sends
/// the socket (SCM_RIGHTS) and closes its own descriptor, which leaves the connection open in the
/// next generation: NIO's close is `close(2)` after removing the fd from epoll, no `shutdown(2)`.
///
/// Once the window has passed, or a send failed for any reason but a full queue, every
/// connection still here falls back to the graceful close. When the next generation is gone (its
/// end of the inbox closed: it died), connections wait for a grace (1 s) first, as for a full
/// queue: the master may call the drain off (its successor died, this generation serves again)
/// or name a newer inbox, and then they stay or go there instead of closing.
public final class ConnectionHandoff: Sendable {
    /// What became of one attempt.
    public enum Outcome: Sendable {
        /// The next generation has it; close this process's descriptor now.
        case sent
        /// The inbox's queue is full: try again shortly.
        case full
        /// No hand-over any more (window passed, inbox broken or closed): close gracefully.
        case closed
    }

    private struct State {
        var inbox: Int32
        var broken: String?
        /// When a send first found the next generation gone.
        var peerGoneAt: NIODeadline?
        var handedOver = 0
        var fellBack = 0
        /// ``close()`` was called: no inbox may be taken on after it.
        var closed = false
    }

    /// How long connections wait for new orders once the next generation is gone.
    private let peerGoneGrace: TimeAmount

    private let state: NIOLockedValueBox<State>
    /// When hand-overs stop and the graceful close takes over.
    public let deadline: NIODeadline
    /// The connections go over this time from the start, evenly and in random order (each at its
    /// moment or its first request boundary after it; see `DrainPacer`), so that the next
    /// generation sets connections up at a pace it can take while it serves, not all at once.
    public let spread: TimeAmount
    /// The hand-over message for a connection to each listener (by position).
    private let messages: [[UInt8]]
    private let handingOver: Set<Int>
    private let logger: Logger

    /// Hands connections to `inbox` (owned from now on) until `window` has passed: those to the
    /// listeners at the positions in `handingOver`, named as in `listenerNames`, spread over
    /// `spread`. Once the next generation is gone, connections wait `peerGoneGrace` for new
    /// orders before they close.
    public init(inbox: Int32, listenerNames: [String], handingOver: Set<Int>, window: TimeAmount, spread: TimeAmount = .zero,
                peerGoneGrace: TimeAmount = .seconds(1), logger: Logger) {
        self.peerGoneGrace = peerGoneGrace
        self.state = NIOLockedValueBox(State(inbox: inbox))
        self.deadline = .now() + window
        self.spread = min(spread, .nanoseconds(window.nanoseconds / 2))
        self.messages = listenerNames.map { Array("\(ConnectionInbox.message) \($0)".utf8) }
        self.handingOver = handingOver
        self.logger = logger
    }

    /// Whether a connection to the listener at position `listener` may still be handed over.
    public func takes(listener: Int?) -> Bool {
        guard let listener, handingOver.contains(listener), listener < messages.count else { return false }
        return NIODeadline.now() < deadline && state.withLockedValue { $0.inbox >= 0 && $0.broken == nil }
    }

    /// Sends the connected socket `fd`, accepted on the listener at position `listener`, to the
    /// next generation. The caller closes `fd` on `.sent`.
    public func handOver(_ fd: Int32, listener: Int) -> Outcome {
        guard NIODeadline.now() < deadline, listener < messages.count else { return .closed }
        let message = messages[listener]
        var failure: String?
        let outcome = state.withLockedValue { state -> Outcome in
            guard state.inbox >= 0, state.broken == nil else { return .closed }
            let now = NIODeadline.now()
            if let gone = state.peerGoneAt {
                guard now - gone >= peerGoneGrace else { return .full }
                state.broken = "the next generation is gone, and no new orders came within \(peerGoneGrace)"
                failure = state.broken
                return .closed
            }
            let sent = message.withUnsafeBytes { baton_send_fd(state.inbox, $0.baseAddress, $0.count, fd) }
            if sent == message.count {
                state.handedOver += 1
                return .sent
            }
            let error = errno
            // ETOOMANYREFS: the sender's user has too many descriptors in flight (a limit set
            // by RLIMIT_NOFILE): the next generation is taking them, so this passes too.
            if sent < 0, error == EAGAIN || error == ENOBUFS || error == ETOOMANYREFS { return .full }
            if sent < 0, error == EPIPE || error == ECONNREFUSED || error == ECONNRESET {
                state.peerGoneAt = now
                return .full
            }
            state.broken = sent < 0 ? String(cString: strerror(error)) : "short send"
            failure = state.broken
            return .closed
        }
        if let failure {
            logger.warning("handing connections to the next generation failed (\(failure)): closing the rest gracefully")
        }
        return outcome
    }

    /// Sends the rest of the connections to `inbox` (owned from now on) instead: a newer
    /// generation became ready while this one was still handing over to the one before it, which
    /// drains too and would only pass each connection on again (issue 19: at 10,000 connections
    /// with an upgrade every 2 s, those hops took the core). Closing this process's copy of the
    /// old inbox lets the generation behind it see that no sender is left.
    public func retarget(to inbox: Int32) {
        state.withLockedValue { state in
            guard !state.closed else {
                Glibc.close(inbox)
                return
            }
            if state.inbox >= 0 { Glibc.close(state.inbox) }
            state.inbox = inbox
            state.broken = nil
            state.peerGoneAt = nil
        }
    }

    /// Counts a connection that was closed instead of handed over.
    func fellBack() {
        state.withLockedValue { $0.fellBack += 1 }
    }

    /// Connections handed over, and connections closed instead.
    public var counts: (handedOver: Int, closed: Int) {
        state.withLockedValue { ($0.handedOver, $0.fellBack) }
    }

    /// Closes the inbox: no hand-over after this.
    public func close() {
        state.withLockedValue { state in
            if state.inbox >= 0 { Glibc.close(state.inbox) }
            state.inbox = -1
            state.closed = true
        }
    }
}
