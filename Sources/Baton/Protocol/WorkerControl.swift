#if canImport(Glibc)
import Glibc
#endif
import CBaton

/// The master's one-way channel to one worker: a unix socket pair whose worker end is passed at
/// the descriptor right after the listeners, named by `BATON_CONTROL_FD` (not counted in
/// `LISTEN_FDS`, so socket-activated programs in any language ignore it). Lines of text, master
/// to worker: ``DrainOrders`` and ``WorkerOrder``s. A worker that never reads it loses nothing.
struct WorkerControl {
    /// The master's end (close-on-exec, non-blocking).
    let masterEnd: Int32
    /// The worker's end, closed in the master once the worker is spawned.
    let workerEnd: Int32

    static func make() throws -> WorkerControl {
        var fds: [Int32] = [-1, -1]
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        guard socketpair(AF_UNIX, type, 0, &fds) == 0 else { throw BatonError.errno("socketpair for a worker's control channel") }
        _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
        return WorkerControl(masterEnd: fds[0], workerEnd: fds[1])
    }

    /// Sends `orders` without blocking, with their ``DrainOrders/connectionInbox`` (a descriptor
    /// of the master) attached as SCM_RIGHTS; a worker that is gone or never reads simply misses
    /// them (MSG_NOSIGNAL: a dead reader must not raise SIGPIPE in the master). A worker of an
    /// older release reads with plain `recv`, which discards the attached descriptor.
    static func send(_ orders: DrainOrders, on fd: Int32) -> Bool {
        send(line: orders.line, descriptor: orders.connectionInbox, on: fd)
    }

    /// Sends a ``WorkerOrder`` the same way (a `share` order with the canary's inbox attached).
    static func send(_ order: WorkerOrder, on fd: Int32) -> Bool {
        if case .share(_, let inbox) = order { return send(line: order.line, descriptor: inbox, on: fd) }
        if case .master(_, let pidfd) = order { return send(line: order.line, descriptor: pidfd, on: fd) }
        return send(line: order.line, descriptor: nil, on: fd)
    }

    private static func send(line: String, descriptor: Int32?, on fd: Int32) -> Bool {
        let bytes = Array(line.utf8)
        return bytes.withUnsafeBytes { baton_send_fd(fd, $0.baseAddress, $0.count, descriptor ?? -1) } == bytes.count
    }
}
