import Baton
import CBaton
@preconcurrency import Dispatch
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
///
/// A connection sent is *lent* for a while (``lendFor``): this process keeps a copy of its
/// descriptor, and notes how many bytes had been read from it. Should the next generation die
/// meanwhile (its drain called off, or its share ended), ``takeBack()`` returns every lent
/// connection nobody has read from since: those still in the dead process's inbox, those it had
/// taken but not read yet, and those sent after its death before its inbox closed. The kernel's
/// teardown of the dead process leaves them open, because of the copy, and they carry on here
/// with nothing lost. A connection it read from is closed with it, as it would be without a copy.
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

    /// A connection sent to the next generation, of which this process keeps a copy.
    private struct Lent {
        /// This process's copy of its descriptor.
        let fd: Int32
        let listener: Int
        /// What had been read from it when it was sent (see `baton_tcp_consumed`).
        let consumed: UInt64
        let sentAt: NIODeadline
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
        /// Oldest first.
        var lent: [Lent] = []
        /// A timer to end loans is pending (one chain at most, also when `lent` emptied meanwhile).
        var loanTimerArmed = false
        var takenBack = 0
    }

    /// How long connections wait for new orders once the next generation is gone.
    private let peerGoneGrace: TimeAmount
    /// How long a connection sent stays lent: this process keeps a copy of it, to take it back
    /// if the next generation dies before it has read from it.
    public let lendFor: TimeAmount

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
    /// orders before they close. Each connection sent stays lent for `lendFor`.
    public init(inbox: Int32, listenerNames: [String], handingOver: Set<Int>, window: TimeAmount, spread: TimeAmount = .zero,
                peerGoneGrace: TimeAmount = .seconds(1), lendFor: TimeAmount = .seconds(2), logger: Logger) {
        self.peerGoneGrace = peerGoneGrace
        self.lendFor = lendFor
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
            // Measured before the send: from then on the next generation may read.
            var consumed: UInt64 = 0
            var established: Int32 = 0
            let measured = baton_tcp_consumed(fd, &consumed, &established) == 0 && established == 1
            let sent = message.withUnsafeBytes { baton_send_fd(state.inbox, $0.baseAddress, $0.count, fd) }
            if sent == message.count {
                state.handedOver += 1
                if measured, lendFor > .zero {
                    let copy = fcntl(fd, F_DUPFD_CLOEXEC, 0)
                    if copy >= 0 {
                        if !state.loanTimerArmed {
                            state.loanTimerArmed = true
                            endLoans(at: now + lendFor)
                        }
                        state.lent.append(Lent(fd: copy, listener: listener, consumed: consumed, sentAt: now))
                    }
                }
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
            // The generation they went to lives on (it drains, and hands them on itself).
            Self.endLoans(&state, sentBefore: nil)
        }
    }

    /// The connections lent to the next generation (see ``lendFor``) that nobody has read from
    /// since they were sent and that are still open both ways, by listener position, now
    /// owned by the caller, who serves them again; provided that generation is gone (its end of
    /// the inbox is closed). Every other copy is closed: a connection the dead process read from
    /// goes with it, and one a living generation holds stays there. Nothing is lent after this.
    public func takeBack() -> (connections: [Int: [Int32]], lost: Int) {
        state.withLockedValue { state in
            defer { Self.endLoans(&state, sentBefore: nil) }
            guard state.inbox >= 0, baton_peer_closed(state.inbox) == 1 else { return ([:], 0) }
            var connections: [Int: [Int32]] = [:]
            var lost: [Lent] = []
            for loan in state.lent {
                var consumed: UInt64 = 0
                var established: Int32 = 0
                guard baton_tcp_consumed(loan.fd, &consumed, &established) == 0, established == 1, consumed == loan.consumed else {
                    lost.append(loan)
                    continue
                }
                connections[loan.listener, default: []].append(loan.fd)
            }
            state.lent = lost  // closed by the defer
            state.takenBack += connections.values.reduce(0) { $0 + $1.count }
            return (connections, lost.count)
        }
    }

    /// Ends the loans due by `time` then, and so on until none is left: a copy must not outlive
    /// its loan when no further send comes to end it. Called with `loanTimerArmed` set.
    private func endLoans(at time: NIODeadline) {
        let delay = max(0, (time - .now()).nanoseconds)
        DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(Int(delay))) { [weak self] in
            guard let self else { return }
            self.state.withLockedValue { state in
                Self.endLoans(&state, sentBefore: .now() - self.lendFor)
                state.loanTimerArmed = state.lent.first != nil
                if let next = state.lent.first { self.endLoans(at: next.sentAt + self.lendFor) }
            }
        }
    }

    /// Closes the copies of the connections sent before `sentBefore` (nil: all of them).
    private static func endLoans(_ state: inout State, sentBefore: NIODeadline?) {
        let ended = sentBefore.map { time in state.lent.prefix { $0.sentAt < time }.count } ?? state.lent.count
        guard ended > 0 else { return }
        for loan in state.lent.prefix(ended) { Glibc.close(loan.fd) }
        state.lent.removeFirst(ended)
    }

    /// Counts a connection that was closed instead of handed over.
    func fellBack() {
        state.withLockedValue { $0.fellBack += 1 }
    }

    /// Connections handed over, connections closed instead, and connections taken back.
    public var counts: (handedOver: Int, closed: Int, takenBack: Int) {
        state.withLockedValue { ($0.handedOver, $0.fellBack, $0.takenBack) }
    }

    /// Closes the inbox and the copies of what was lent: no hand-over after this.
    public func close() {
        state.withLockedValue { state in
            Self.endLoans(&state, sentBefore: nil)
            if state.inbox >= 0 { Glibc.close(state.inbox) }
            state.inbox = -1
            state.closed = true
        }
    }
}
