#if canImport(Glibc)
import Glibc
#endif
import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Where deployed binaries are kept and started from: `<app>/.baton/releases/<Ver>-<sha>/<name>`.
///
/// Staging copies the binary the operator uploaded, after checking it, so that:
/// - the operator can overwrite `BinName` in place (no "Text file busy": nothing runs it);
/// - a half-uploaded, tampered or world-writable file never starts;
/// - the previous releases stay on disk for a rollback.
package struct ReleaseStore: Sendable {
    /// The app folder (the config file's folder), symlinks resolved.
    package let appFolder: String
    /// `<app>/.baton/releases`.
    package let root: String
    /// Accept group/other-writable or foreign-owned binaries (not recommended).
    package var allowInsecurePermissions = false
    /// How many releases to keep (those in use are always kept).
    package var keep = 5

    /// The store of the app in `appFolder`; the folder must exist.
    package init(appFolder: String) throws {
        guard let resolved = realpath(appFolder, nil) else {
            throw StagingError(path: appFolder, problem: "app folder cannot be resolved: \(String(cString: strerror(errno)))")
        }
        defer { free(resolved) }
        self.appFolder = String(cString: resolved)
        self.root = self.appFolder + "/.baton/releases"
    }

    /// A staged binary.
    package struct Release: Sendable, Equatable {
        /// The copy to start.
        package let path: String
        /// Its SHA-256, lowercase hex.
        package let sha256: String
    }

    /// What ``inspect(binName:expectedSHA256:)`` found.
    package struct Inspection: Sendable {
        package let path: String
        package let sha256: String
        package let size: Int
        let bytes: [UInt8]
    }

    /// Checks `binName` (relative to the app folder) and copies it into the store.
    package func stage(binName: String, version: String, expectedSHA256: String? = nil) throws -> Release {
        let inspection = try inspect(binName: binName, expectedSHA256: expectedSHA256)
        let (source, bytes, sha) = (inspection.path, inspection.bytes, inspection.sha256)
        let name = source.split(separator: "/").last.map(String.init) ?? source
        let folder = "\(root)/\(version)-\(sha.prefix(12))"
        let target = "\(folder)/\(name)"
        if FileManager.default.fileExists(atPath: target) {
            touch(folder)
            return Release(path: target, sha256: sha)
        }
        try makeFolder(root)
        // Write into a temporary folder and rename it into place: a crash leaves no half release.
        let temporary = "\(root)/.staging-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try makeFolder(temporary)
        do {
            try writeExecutable(bytes, to: "\(temporary)/\(name)")
            guard rename(temporary, folder) == 0 else { throw StagingError(path: folder, problem: "cannot be created: \(String(cString: strerror(errno)))") }
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw error
        }
        return Release(path: target, sha256: sha)
    }

    /// Runs every check staging runs, without writing anything.
    package func inspect(binName: String, expectedSHA256: String? = nil) throws -> Inspection {
        let source = try resolve(binName)
        let fd = open(source, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw StagingError(path: source, problem: "cannot be opened: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw StagingError(path: source, problem: "cannot be read") }
        guard info.st_mode & S_IFMT == S_IFREG else { throw StagingError(path: source, problem: "is not a regular file") }
        guard info.st_mode & 0o111 != 0 else {
            throw StagingError(path: source, problem: "is not executable (mode \(String(info.st_mode & 0o7777, radix: 8))): run 'chmod 755 \(source)'")
        }
        if !allowInsecurePermissions { try FileSafety.check(info, path: source, what: "the binary") }

        let bytes = try readAll(fd, path: source, size: Int(info.st_size))
        if let problem = ExecutableCheck.problem(in: bytes) { throw StagingError(path: source, problem: problem) }
        let sha = SHA256.hash(data: bytes).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        if let expected = expectedSHA256?.lowercased(), expected != sha {
            throw StagingError(path: source, problem: "SHA-256 is \(sha), watch.conf expects \(expected)")
        }
        return Inspection(path: source, sha256: sha, size: bytes.count, bytes: bytes)
    }

    /// Removes all but the newest ``keep`` releases, never one whose binary is in `inUse`.
    /// Returns the folders removed.
    @discardableResult
    package func prune(inUse: Set<String>) -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: root) else { return [] }
        let releases = names.filter { !$0.hasPrefix(".") }.map { "\(root)/\($0)" }.sorted { modified($0) > modified($1) }
        var removed: [String] = []
        for folder in releases.dropFirst(keep) where !inUse.contains(where: { $0.hasPrefix(folder + "/") }) {
            if (try? FileManager.default.removeItem(atPath: folder)) != nil { removed.append(folder) }
        }
        return removed
    }

    /// `binName` inside the app folder, symlinks resolved; nothing outside it.
    func resolve(_ binName: String) throws -> String {
        let shown = "\(appFolder)/\(binName)"
        guard !binName.hasPrefix("/"), !binName.split(separator: "/").contains("..") else {
            throw StagingError(path: shown, problem: "BinName must name a file inside the app folder \(appFolder)")
        }
        guard let resolved = realpath(shown, nil) else {
            throw StagingError(path: shown, problem: "BinName cannot be found: \(String(cString: strerror(errno)))")
        }
        defer { free(resolved) }
        let path = String(cString: resolved)
        guard path.hasPrefix(appFolder + "/") else {
            throw StagingError(path: shown, problem: "resolves to \(path), outside the app folder \(appFolder)")
        }
        return path
    }

    /// At most this much per `pread`/`write`. The kernel copies a file from the page cache without
    /// a point at which it yields the CPU (this kernel runs PREEMPT_NONE): one `pread` of a 55 MB
    /// binary kept the master's thread on the core for 12 ms straight, and the workers sharing
    /// that core waited, whatever the thread's priority. A megabyte takes a fraction of a millisecond.
    static let ioChunk = 1 << 20

    private func readAll(_ fd: Int32, path: String, size: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: size)
        var done = 0
        while done < size {
            let count = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, min(size - done, Self.ioChunk), off_t(done)) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw StagingError(path: path, problem: "changed while being read (upload still running?)") }
            done += count
        }
        return bytes
    }

    private func writeExecutable(_ bytes: [UInt8], to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o755)
        guard fd >= 0 else { throw StagingError(path: path, problem: "cannot be created: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var done = 0
        while done < bytes.count {
            let count = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, min(bytes.count - done, Self.ioChunk)) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw StagingError(path: path, problem: "cannot be written: \(String(cString: strerror(errno)))") }
            done += count
        }
        // 0755 whatever the umask; never group/other-writable.
        guard fchmod(fd, 0o755) == 0, fsync(fd) == 0 else { throw StagingError(path: path, problem: "cannot be finished: \(String(cString: strerror(errno)))") }
    }

    private func makeFolder(_ path: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        } catch {
            throw StagingError(path: path, problem: "cannot be created: \(error)")  // localizedDescription is Foundation's
        }
    }

    private func touch(_ path: String) { utimes(path, nil) }

    private func modified(_ path: String) -> Double {
        var info = stat()
        guard stat(path, &info) == 0 else { return 0 }
        return Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9
    }
}
