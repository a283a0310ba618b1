#if canImport(Glibc)
import Glibc
#endif
import CBaton
@preconcurrency import Dispatch

/// How a child process ended.
package enum ExitStatus: Sendable, Equatable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)
    /// Not this process's child (a worker adopted from a master that died): it is someone
    /// else's to reap, and its status is not ours to know.
    case unknown

    /// Decodes a `waitpid` status (the W* macros are not importable into Swift).
    package init(waitStatus status: Int32) {
        if status & 0x7f == 0 { self = .exited((status >> 8) & 0xff) } else { self = .signaled(status & 0x7f) }
    }

    package var description: String {
        switch self {
        case .exited(let code): return "exit status \(code)"
        case .signaled(let signal): return "signal \(signal) (\(String(cString: strsignal(signal))))"
        case .unknown: return "status unknown: adopted, not this master's child"
        }
    }
}

/// Reaps the master's children, each through its own pidfd: only the processes Baton started
/// are waited for, so an embedding app's other children are left alone, and there is no SIGCHLD
/// handler to coordinate with anyone.
final class ChildWatcher: Sendable {
    private let queue = DispatchQueue(label: "baton.children")

    /// Calls `onExit` once `pid` has exited and has been reaped.
    func watch(_ pid: pid_t, onExit: @escaping @Sendable (pid_t, ExitStatus) -> Void) throws {
        let pidfd = baton_pidfd_open(pid)
        guard pidfd >= 0 else { throw BatonError.errno("pidfd_open(\(pid))") }
        let source = DispatchSource.makeReadSource(fileDescriptor: pidfd, queue: queue)
        source.setEventHandler { [source] in
            var status: Int32 = 0
            let reaped = waitpid(pid, &status, WNOHANG)
            guard reaped == pid || (reaped < 0 && errno == ECHILD) else { return }
            source.cancel()
            onExit(pid, reaped == pid ? ExitStatus(waitStatus: status) : .unknown)
        }
        source.setCancelHandler { close(pidfd) }
        source.resume()
    }
}
