#if canImport(Glibc)
import Glibc
#endif
import CBaton

/// What the master tells a worker as it asks it to drain (sent just before SIGTERM).
///
/// Generations share their listening sockets. A draining worker that accepted what is queued on
/// a socket another generation serves would take connections only to close them again; on a
/// socket nobody else serves (an old port after a port change, the last generation at a stop) it
/// must take them, or closing the last copy resets them.
public struct DrainOrders: Sendable, Equatable {
    /// Positions (0 = fd 3) of the listeners whose accept queue another generation, or systemd,
    /// goes on serving: leave what is queued there.
    public var sharedListeners: Set<Int>
    /// The next generation's ``ConnectionInbox`` (a descriptor of this process, sent along with
    /// the orders): hand idle keep-alive connections over there instead of closing them. Nil when
    /// the next generation cannot take connections; then close them gracefully.
    public var connectionInbox: Int32?

    /// Orders naming the listeners (by position) whose queue the worker must leave alone, and
    /// where connections go, if anywhere.
    public init(sharedListeners: Set<Int>, connectionInbox: Int32? = nil) {
        self.sharedListeners = sharedListeners
        self.connectionInbox = connectionInbox
    }

    /// The protocol line: `drain shared=0,2`, with ` handoff=1` when an inbox is attached.
    var line: String {
        "drain shared=\(sharedListeners.sorted().map(String.init).joined(separator: ","))\(connectionInbox == nil ? "" : " handoff=1")\n"
    }

    /// Parses the last `drain` line of `text`; nil if there is none or it is malformed. With
    /// `handoff=1` in the line, `inbox` is the descriptor that came with it.
    init?(parsing text: String, inbox: Int32? = nil) {
        guard let line = text.split(separator: "\n").last(where: { $0.hasPrefix("drain ") }) else { return nil }
        var shared: Set<Int>?
        for field in line.dropFirst("drain ".count).split(separator: " ") where field.hasPrefix("shared=") {
            let list = field.dropFirst("shared=".count)
            let numbers = list.split(separator: ",").map { Int($0) }
            guard numbers.allSatisfy({ ($0 ?? -1) >= 0 }) else { return nil }
            shared = Set(numbers.compactMap { $0 })
        }
        guard let shared else { return nil }
        self.sharedListeners = shared
        self.connectionInbox = line.split(separator: " ").contains("handoff=1") ? inbox : nil
    }
}

/// The master's one-way channel to one worker: a unix socket pair whose worker end is passed at
/// the descriptor right after the listeners, named by `BATON_CONTROL_FD` (not counted in
/// `LISTEN_FDS`, so socket-activated programs in any language ignore it). Lines of text, master
/// to worker; today only ``DrainOrders``. A worker that never reads it loses nothing.
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
        let bytes = Array(orders.line.utf8)
        return bytes.withUnsafeBytes { baton_send_fd(fd, $0.baseAddress, $0.count, orders.connectionInbox ?? -1) } == bytes.count
    }

    /// Reads what the master sent so far on the worker's end, without blocking, and the last
    /// descriptor that came with it (close-on-exec; earlier ones are closed).
    static func receive(on fd: Int32) -> (text: String, descriptor: Int32?) {
        var text: [UInt8] = []
        var descriptor: Int32?
        var buffer = [UInt8](repeating: 0, count: 512)
        while text.count < 65536 {
            var received: Int32 = -1
            let n = buffer.withUnsafeMutableBytes { baton_recv_fd(fd, $0.baseAddress, $0.count, &received) }
            if received >= 0 {
                if let earlier = descriptor { close(earlier) }
                descriptor = received
            }
            guard n > 0 else { break }
            text += buffer[0..<n]
        }
        return (String(decoding: text, as: UTF8.self), descriptor)
    }
}

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
public struct ConnectionInbox {
    /// The master's end (close-on-exec).
    let senderEnd: Int32
    /// The worker's end, closed in the master once the worker is spawned.
    let receiverEnd: Int32

    /// The start of a hand-over message, version 1.
    public static let message = "baton-connection 1"

    static func make() throws -> ConnectionInbox {
        var fds: [Int32] = [-1, -1]
        let type = Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        guard socketpair(AF_UNIX, type, 0, &fds) == 0 else { throw BatonError.errno("socketpair for a worker's connection inbox") }
        return ConnectionInbox(senderEnd: fds[0], receiverEnd: fds[1])
    }
}
