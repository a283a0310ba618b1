import NIOConcurrencyHelpers
#if canImport(Glibc)
import Glibc
#endif

/// The serving generation's side of a canary upgrade: `percent` of the connections it accepts
/// go to the canary's inbox as soon as they are accepted (unread: what the client sent waits in
/// the socket), exactly that many in every hundred, evenly; the keep-alive connections it already
/// holds move through the same ``ConnectionHandoff`` (``ConnectionRegistry/share(percent:handoff:spread:)``).
///
/// A connection that cannot be passed (the inbox's queue is full for a moment) is served here,
/// and the next one goes instead: the share counts what the canary got, not what was tried.
final class TrafficShare: Sendable {
    private struct Counts {
        var accepted = 0
        var passed = 0
    }

    let percent: Int
    let handoff: ConnectionHandoff
    private let counts = NIOLockedValueBox(Counts())

    init(percent: Int, handoff: ConnectionHandoff) {
        self.percent = percent
        self.handoff = handoff
    }

    /// Passes the canary its share of `fds`, just accepted on the listener at position
    /// `listener`, and returns the rest, to be served here.
    func split(_ fds: [Int32], listener: Int) -> [Int32] {
        var kept: [Int32] = []
        for fd in fds {
            let owed = counts.withLockedValue { counts -> Bool in
                counts.accepted += 1
                return counts.passed < counts.accepted * percent / 100
            }
            if owed, case .sent = handoff.handOver(fd, listener: listener) {
                counts.withLockedValue { $0.passed += 1 }
                close(fd)
            } else {
                kept.append(fd)
            }
        }
        return kept
    }
}
