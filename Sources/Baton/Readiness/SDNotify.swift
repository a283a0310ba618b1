#if canImport(Glibc)
import Glibc
#endif
import CBaton

/// The sending side of the readiness protocol, `sd_notify(3)` in Swift: a worker (or a master
/// under systemd) reports `READY=1`, `STATUS=…`, `STOPPING=1` to the socket in `NOTIFY_SOCKET`.
package enum SDNotify {
    /// Sends `message` to `socketPath`. Returns false when there is no socket to send to.
    /// With `orDrop`, a full queue throws at once instead of blocking: for reports that the next
    /// one replaces (a master that died holds no reader, and its keeper keeps the socket open
    /// until a successor reads it: the queue fills after 10 datagrams).
    @discardableResult
    package static func send(_ message: NotifyMessage, to socketPath: String?, orDrop: Bool = false) throws -> Bool {
        guard let socketPath, !socketPath.isEmpty else { return false }
        let text = message.text
        let rc = text.withCString { baton_notify_send(socketPath, $0, strlen($0), orDrop ? 1 : 0) }
        guard rc == 0 else { throw BatonError.errno("sd_notify to \(socketPath)") }
        return true
    }

    /// Sends `message` to the socket named in this process's `NOTIFY_SOCKET`, if any.
    @discardableResult
    package static func send(_ message: NotifyMessage) throws -> Bool {
        try send(message, to: getenv("NOTIFY_SOCKET").map { String(cString: $0) })
    }
}
