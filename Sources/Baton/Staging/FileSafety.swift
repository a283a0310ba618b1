#if canImport(Glibc)
import Glibc
#endif

/// sshd's StrictModes for deploy files: a binary or config that someone else could have written
/// is refused, because whoever can write it can run code as this service.
package enum FileSafety {
    /// Checks `info` (from `fstat`) of the file at `path`; `what` names it in the error.
    static func check(_ info: stat, path: String, what: String) throws {
        let mode = info.st_mode & 0o7777
        if mode & 0o022 != 0 {
            throw StagingError(path: path, problem: "\(what) is writable by group or others (mode \(String(mode, radix: 8))): run 'chmod go-w \(path)'")
        }
        if info.st_uid != geteuid() && info.st_uid != 0 {
            throw StagingError(path: path, problem: "\(what) is owned by uid \(info.st_uid), not by this service's user (uid \(geteuid())) or root")
        }
    }

    /// Checks the file at `path` (following symlinks).
    package static func check(path: String, what: String) throws {
        var info = stat()
        guard stat(path, &info) == 0 else { throw StagingError(path: path, problem: "\(what) cannot be read: \(String(cString: strerror(errno)))") }
        try check(info, path: path, what: what)
    }
}

/// A binary that cannot be staged, and why.
package struct StagingError: Error, CustomStringConvertible, Equatable {
    package let path: String
    package let problem: String

    package var description: String { "\(path): \(problem)" }
}
