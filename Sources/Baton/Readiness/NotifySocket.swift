#if canImport(Glibc)
import Glibc
#endif
import CBaton
@preconcurrency import Dispatch

/// The master's end of the readiness protocol: a datagram socket that workers find in
/// `NOTIFY_SOCKET` and send `READY=1` and friends to.
///
/// It lives in the abstract namespace (no file to clean up or protect); the sender of every
/// datagram is identified by the kernel (SCM_CREDENTIALS), so a message counts only for the pid
/// the kernel names, whoever sent it.
final class NotifySocket: Sendable {
    /// The `NOTIFY_SOCKET` value for workers ('@' = abstract namespace).
    let path: String
    let fd: Int32
    private let source: any DispatchSourceRead

    /// Opens the socket; `onMessage` is called (on a private queue) with each datagram's sender.
    convenience init(onMessage: @escaping @Sendable (pid_t, NotifyMessage) -> Void) throws {
        let path = "@baton/\(getpid())/\(UInt64.random(in: 0...UInt64.max))"
        let fd = baton_notify_socket_open(path)
        guard fd >= 0 else { throw BatonError.errno("opening notify socket \(path)") }
        try self.init(adopting: fd, path: path, onMessage: onMessage)
    }

    /// Serves the socket `fd` bound at `path`, as a previous image of this master left it
    /// (datagrams sent meanwhile wait in it).
    init(adopting fd: Int32, path: String, onMessage: @escaping @Sendable (pid_t, NotifyMessage) -> Void) throws {
        guard fcntl(fd, F_SETFD, FD_CLOEXEC) == 0 else { throw BatonError.errno("notify socket fd \(fd)") }
        self.path = path
        self.fd = fd
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: DispatchQueue(label: "baton.notify"))
        source.setEventHandler {
            var buffer = [CChar](repeating: 0, count: 4096)
            while true {
                var sender: pid_t = 0
                let count = buffer.withUnsafeMutableBufferPointer { baton_recv_with_pid(fd, $0.baseAddress, $0.count - 1, &sender) }
                if count < 0 {
                    if errno == EINTR || errno == EMSGSIZE { continue }
                    return  // EAGAIN: drained
                }
                let text = String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                if sender > 0 { onMessage(sender, NotifyMessage(parsing: text)) }
            }
        }
        source.setCancelHandler { _ = Glibc.close(fd) }
        self.source = source
        source.resume()
    }

    func close() {
        source.cancel()
    }
}
