import NIOConcurrencyHelpers
#if canImport(Glibc)
import Glibc
#endif

/// The serving generation's side of a canary upgrade: `percent` of the connections it accepts
/// go to the canary's inbox as soon as they are accepted (unread: what the client sent waits in
/// the socket), exactly that many in every hundred, evenly; the keep-alive connections it already
/// holds move through the same ``ConnectionHandoff`` (``ConnectionRegistry/share(percent:handoff:spread:)``).
final class TrafficShare: Sendable {
    let percent: Int
    let handoff: ConnectionHandoff
    private let accepted = NIOLockedValueBox(0)

    init(percent: Int, handoff: ConnectionHandoff) {
        self.percent = percent
        self.handoff = handoff
    }

    /// Passes the canary its share of `fds`, just accepted on the listener at position
    /// `listener`, and returns the rest, to be served here. A connection that cannot be passed
    /// (the inbox is full or gone) is served here too.
    func split(_ fds: [Int32], listener: Int) -> [Int32] {
        var kept: [Int32] = []
        for fd in fds {
            let passes = accepted.withLockedValue { n -> Bool in
                defer { n += 1 }
                return (n + 1) * percent / 100 > n * percent / 100
            }
            if passes, case .sent = handoff.handOver(fd, listener: listener) {
                close(fd)
            } else {
                kept.append(fd)
            }
        }
        return kept
    }
}
