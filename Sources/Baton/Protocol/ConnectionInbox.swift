#if canImport(Glibc)
import Glibc
#endif

/// A worker's inbox for the connections the generation before it hands over when it drains: a
/// `SOCK_SEQPACKET` unix socket pair. The worker gets the receiving end at the descriptor after
/// its control channel (`BATON_HANDOFF_FD`); the master keeps the sending end and passes a copy
/// to the previous generation with its ``DrainOrders``, once this worker said it takes
/// connections (`BATON_HANDOFF=1` with `READY=1`).
///
/// Each message is ``ConnectionInbox/message``, a space and the name of the listener (as in
/// `LISTEN_FDNAMES`) that accepted the connection, with the connected socket attached
/// (SCM_RIGHTS).
/// It is handed over at a request boundary: every byte the old generation read was part of a
/// request it answered, and whatever the client sent since waits in the socket's receive queue,
/// which travels with it. The receiver serves it as if it had accepted it.
package struct ConnectionInbox {
    /// The master's end (close-on-exec).
    let senderEnd: Int32
    /// The worker's end, closed in the master once the worker is spawned.
    let receiverEnd: Int32

    /// The start of a hand-over message, version 1.
    package static let message = "baton-connection 1"

    static func make() throws -> ConnectionInbox {
        var fds: [Int32] = [-1, -1]
        let type = Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        guard socketpair(AF_UNIX, type, 0, &fds) == 0 else { throw BatonError.errno("socketpair for a worker's connection inbox") }
        return ConnectionInbox(senderEnd: fds[0], receiverEnd: fds[1])
    }
}
