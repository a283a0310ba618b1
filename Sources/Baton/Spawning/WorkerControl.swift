#if canImport(Glibc)
import Glibc
#endif

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

    /// Orders naming the listeners (by position) whose queue the worker must leave alone.
    public init(sharedListeners: Set<Int>) {
        self.sharedListeners = sharedListeners
    }

    /// The protocol line: `drain shared=0,2`.
    var line: String {
        "drain shared=\(sharedListeners.sorted().map(String.init).joined(separator: ","))\n"
    }

    /// Parses the last `drain` line of `text`; nil if there is none or it is malformed.
    init?(parsing text: String) {
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

    /// Sends `orders` without blocking; a worker that is gone or never reads simply misses them
    /// (MSG_NOSIGNAL: a dead reader must not raise SIGPIPE in the master).
    static func send(_ orders: DrainOrders, on fd: Int32) -> Bool {
        let bytes = Array(orders.line.utf8)
        return bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) } == bytes.count
    }

    /// Reads what the master sent so far on the worker's end, without blocking.
    static func receive(on fd: Int32) -> String {
        var text: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 512)
        while text.count < 65536 {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            guard n > 0 else { break }
            text += buffer[0..<n]
        }
        return String(decoding: text, as: UTF8.self)
    }
}
