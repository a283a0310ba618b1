#if canImport(Glibc)
import Glibc
#endif

/// systemd-style socket activation (`sd_listen_fds(3)`): listeners passed at fd 3, 4, … with
/// `LISTEN_FDS`, `LISTEN_PID` and `LISTEN_FDNAMES`.
///
/// Baton's master hands listeners to its workers this way, and accepts them the same way from
/// systemd (a `.socket` unit).
package enum SocketActivation {
    /// The first descriptor passed (`SD_LISTEN_FDS_START`).
    package static let firstDescriptor: Int32 = 3

    /// Adopts the listeners passed to this process, or returns nil when none were passed to *this*
    /// process (`LISTEN_PID` absent or naming another pid).
    ///
    /// Each adopted descriptor gets close-on-exec, and must be a listening stream socket.
    /// `LISTEN_FDS`, `LISTEN_PID` and `LISTEN_FDNAMES` are removed from the environment so that
    /// nothing started later inherits them.
    package static func adoptListeners(
        environment: [String: String] = ProcessEnvironment.current(),
        pid: pid_t = getpid(),
        unsetVariables: Bool = true
    ) throws -> [Listener]? {
        guard let pidText = environment["LISTEN_PID"], let countText = environment["LISTEN_FDS"] else { return nil }
        defer {
            if unsetVariables { for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] { unsetenv(name) } }
        }
        guard let listenPID = pid_t(pidText) else { throw BatonError.invalidEnvironment("LISTEN_PID='\(pidText)' is not a pid") }
        guard listenPID == pid else { return nil }
        guard let count = Int32(countText), count >= 0, count <= 64 else {
            throw BatonError.invalidEnvironment("LISTEN_FDS='\(countText)' is not a count from 0 to 64")
        }
        var names = environment["LISTEN_FDNAMES"].map { $0.split(separator: ":", omittingEmptySubsequences: false).map(String.init) } ?? []
        if names.count != Int(count) { names = (0..<Int(count)).map { _ in "unknown" } }
        return try (0..<count).map { index in
            let fd = firstDescriptor + index
            try checkListeningSocket(fd)
            guard fcntl(fd, F_SETFD, FD_CLOEXEC) == 0 else { throw BatonError.errno("fcntl(F_SETFD) on fd \(fd)") }
            return Listener(fd: fd, name: names[Int(index)])
        }
    }

    static func checkListeningSocket(_ fd: Int32) throws {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw BatonError.invalidEnvironment("fd \(fd) is not open") }
        guard (info.st_mode & S_IFMT) == S_IFSOCK else { throw BatonError.invalidEnvironment("fd \(fd) is not a socket") }
        var accepting: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &length) == 0, accepting == 1 else {
            throw BatonError.invalidEnvironment("fd \(fd) is not a listening socket")
        }
    }
}
