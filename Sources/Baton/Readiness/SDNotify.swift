#if canImport(Glibc)
import Glibc
#endif
import CBaton

/// The sending side of the readiness protocol, `sd_notify(3)` in Swift: a worker (or a master
/// under systemd) reports `READY=1`, `STATUS=…`, `STOPPING=1` to the socket in `NOTIFY_SOCKET`.
package enum SDNotify {
    /// Sends `message` to `socketPath`. Returns false when there is no socket to send to.
    @discardableResult
    package static func send(_ message: NotifyMessage, to socketPath: String?) throws -> Bool {
        guard let socketPath, !socketPath.isEmpty else { return false }
        let text = message.text
        let rc = text.withCString { baton_notify_send(socketPath, $0, strlen($0)) }
        guard rc == 0 else { throw BatonError.errno("sd_notify to \(socketPath)") }
        return true
    }

    /// Sends `message` to the socket named in this process's `NOTIFY_SOCKET`, if any.
    @discardableResult
    package static func send(_ message: NotifyMessage) throws -> Bool {
        try send(message, to: getenv("NOTIFY_SOCKET").map { String(cString: $0) })
    }
}
