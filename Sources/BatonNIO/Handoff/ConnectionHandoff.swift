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
/// Once the window has passed, or a send failed for any reason but a full queue (the next
/// generation is gone), every connection still here falls back to the graceful close.
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
        var handedOver = 0
        var fellBack = 0
    }

    private let state: NIOLockedValueBox<State>
    /// When hand-overs stop and the graceful close takes over.
    public let deadline: NIODeadline
    private let logger: Logger

    /// Hands connections to `inbox` (owned from now on) until `window` has passed.
    public init(inbox: Int32, window: TimeAmount, logger: Logger) {
        self.state = NIOLockedValueBox(State(inbox: inbox))
        self.deadline = .now() + window
        self.logger = logger
    }

    /// Whether a connection may still be handed over.
    public var isOpen: Bool {
        NIODeadline.now() < deadline && state.withLockedValue { $0.inbox >= 0 && $0.broken == nil }
    }

    /// Sends the connected socket `fd` to the next generation. The caller closes `fd` on `.sent`.
    public func handOver(_ fd: Int32) -> Outcome {
        guard NIODeadline.now() < deadline else { return .closed }
        let message = Array(ConnectionInbox.message.utf8)
        var failure: String?
        let outcome = state.withLockedValue { state -> Outcome in
            guard state.inbox >= 0, state.broken == nil else { return .closed }
            let sent = message.withUnsafeBytes { baton_send_fd(state.inbox, $0.baseAddress, $0.count, fd) }
            if sent == message.count {
                state.handedOver += 1
                return .sent
            }
            let error = errno
            if sent < 0, error == EAGAIN || error == ENOBUFS { return .full }
            state.broken = sent < 0 ? String(cString: strerror(error)) : "short send"
            failure = state.broken
            return .closed
        }
        if let failure {
            logger.warning("handing connections to the next generation failed (\(failure)): closing the rest gracefully")
        }
        return outcome
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
        }
    }
}
