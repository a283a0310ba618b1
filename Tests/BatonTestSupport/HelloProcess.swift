#if os(Linux)
import Foundation
import Glibc

/// One `hello` master started from a private copy of the binary in a fresh temp directory (so a
/// test can replace the binary by rename), with stdout+stderr captured to `hello.log` there.
package final class HelloProcess: TestProcess {
    package let directory: URL
    /// The copy the master runs (and re-runs on SIGHUP).
    package let executable: URL
    package var logURL: URL { URL(fileURLWithPath: logPath) }
    package let port: UInt16
    package var masterPid: pid_t { pid }
    package var exitStatus: ExitStatus? { status }
    package let arguments: [String]
    /// The `hello` built by SwiftPM (copied, never modified).
    package let sourceBinary: URL
    private var cleanedUp = false

    /// How the master is told what to run.
    package enum Mode {
        /// `--port N`: hello upgrades to the `hello` in its folder on SIGHUP.
        case port
        /// The seed workflow: `hello.watch.conf` in the folder (HttpPort = a free port, BinName
        /// `hello`), read with `--config <absolute path>` or, with `passConfig: false`, found
        /// in the working directory as `./app` does.
        case watchConf(ver: String, delaySecond: Double, passConfig: Bool)
    }

    /// `hello.watch.conf` in the folder (written only in `.watchConf` mode).
    package var configURL: URL { directory.appendingPathComponent("hello.watch.conf") }
    /// `<folder>/.baton/releases`.
    package var releasesURL: URL { directory.appendingPathComponent(".baton/releases") }

    /// Copies the binary, starts the master on a free port (working directory: the temp folder,
    /// where it creates ./.baton/control.sock and reads ./hello.watch.conf) and waits (bounded)
    /// until `/hello` answers 200. `launcher` (absolute path first) is a command that execs the
    /// master, such as `["/usr/bin/taskset", "-c", "0"]`. `binary` names another product with
    /// hello's routes and options (`vapor-hello`).
    package init(extraArguments: [String] = [], readyTimeout: TimeInterval = 30, mode: Mode = .port, launcher: [String] = [],
                 binary: String = "hello") throws {
        let fm = FileManager.default
        sourceBinary = URL(fileURLWithPath: try Locations.product(binary))
        directory = fm.temporaryDirectory.appendingPathComponent("baton-it-\(UUID().uuidString.prefix(8))")
        try fm.createDirectory(at: directory, withIntermediateDirectories: true)
        executable = directory.appendingPathComponent(binary)
        let logURL = directory.appendingPathComponent("hello.log")
        try fm.copyItem(at: sourceBinary, to: executable)
        chmod(executable.path, 0o755)
        _ = fm.createFile(atPath: logURL.path, contents: nil)
        port = try freePort()
        switch mode {
        case .port:
            arguments = ["--port", String(port)] + extraArguments
        case .watchConf(let ver, let delaySecond, let passConfig):
            let config = directory.appendingPathComponent("hello.watch.conf")
            try HelloProcess.writeFile(config, HelloProcess.watchConf(port: port, ver: ver, delaySecond: delaySecond))
            arguments = (passConfig ? ["--config", config.path] : []) + extraArguments
        }
        let argv = launcher + [executable.path] + arguments
        try super.init(argv[0], Array(argv.dropFirst()), directory: directory.path, environment: cleanEnvironment(), log: logURL.path)
        try waitUntilServing(timeout: readyTimeout)
    }

    deinit { cleanUp() }

    // MARK: Talking to it

    /// One request on a fresh connection.
    package func get(_ path: String = "/hello", timeout: TimeInterval = 10) -> Result<HTTPResponse, HTTPFailure> {
        httpGetOnce(port: port, path: path, timeout: timeout)
    }

    /// The pid in a fresh `/hello` answer, nil if the request failed.
    package func servingPid() -> pid_t? {
        if case .success(let r) = get(), r.status == 200 { return r.pid }
        return nil
    }

    private func waitUntilServing(timeout: TimeInterval) throws {
        let deadline = Date().addingTimeInterval(timeout)
        var last = "no attempt"
        while Date() < deadline {
            if let status = reap() {
                throw TestError("hello master \(status) before serving\n--- hello log ---\n\(logExcerpt())")
            }
            switch get(timeout: 2) {
            case .success(let response) where response.status == 200 && response.pid != nil:
                track(response.pid!)
                return
            case .success(let response):
                last = "status \(response.status) \(response.bodyText.prefix(200))"
            case .failure(let error):
                last = error.description
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
        throw TestError("hello did not answer 200 on /hello within \(timeout) s (last: \(last))\n--- hello log ---\n\(logExcerpt())")
    }

    /// Kills everything and deletes the temp directory; with `keepLog` only the binaries go and
    /// the directory with `hello.log` stays for a post-mortem. Idempotent.
    package func cleanUp(keepLog: Bool = false) {
        guard !cleanedUp else { return }
        cleanedUp = true
        killAll()
        let fm = FileManager.default
        if keepLog {
            for name in (try? fm.contentsOfDirectory(atPath: directory.path)) ?? [] where name != "hello.log" {
                try? fm.removeItem(at: directory.appendingPathComponent(name))
            }
        } else {
            try? fm.removeItem(at: directory)
        }
    }

    // MARK: Binary replacement

    /// Replaces the binary the master will run next by rename, as a deploy does.
    package func replaceBinary(withScript script: String) throws {
        let next = directory.appendingPathComponent("hello.next")
        try Data(script.utf8).write(to: next)
        try installByRename(next)
    }

    /// Puts the real hello binary back, by rename.
    package func restoreBinary() throws {
        let next = directory.appendingPathComponent("hello.next")
        try? FileManager.default.removeItem(at: next)
        try FileManager.default.copyItem(at: sourceBinary, to: next)
        try installByRename(next)
    }

    private func installByRename(_ next: URL) throws {
        guard chmod(next.path, 0o755) == 0 else { throw TestError("chmod: \(String(cString: strerror(errno)))") }
        guard rename(next.path, executable.path) == 0 else {
            throw TestError("rename: \(String(cString: strerror(errno)))")
        }
    }

    // MARK: Deploy files (watch.conf mode)

    /// watch.conf text with the seed's four keys, `Sha256` when given, and `extra` raw members.
    package static func watchConf(port: UInt16, ver: String, delaySecond: Double, binName: String = "hello",
                                  sha256: String? = nil, extra: String? = nil) -> String {
        var members = [#""HttpPort": "\#(port)""#, #""Ver": "\#(ver)""#, #""DelaySecond": \#(delaySecond)"#,
                       #""BinName": "\#(binName)""#]
        if let sha256 { members.append(#""Sha256": "\#(sha256)""#) }
        if let extra { members.append(extra) }
        return "{" + members.joined(separator: ", ") + "}\n"
    }

    /// The ways a deploy changes a file.
    package enum WriteStyle: CaseIterable {
        /// open(O_TRUNC) + write + close on the file itself (same inode).
        case inPlace
        /// Written to a temporary name in the folder, then renamed over it (vim, rsync, scp).
        case rename
        /// Deleted, then created again a few milliseconds later.
        case deleteAndCreate
    }

    /// Writes `text` to watch.conf (mode 0644).
    package func writeConfig(_ text: String, style: WriteStyle = .rename) throws {
        try HelloProcess.write(Array(text.utf8), to: configURL, style: style, mode: 0o644)
    }

    /// `touch hello.watch.conf`: only the timestamps change.
    package func touchConfig() throws {
        guard utimes(configURL.path, nil) == 0 else { throw TestError("utimes: \(String(cString: strerror(errno)))") }
    }

    /// Writes `bytes` to `url` in the given style and sets `mode` (whatever the umask).
    package static func write(_ bytes: [UInt8], to url: URL, style: WriteStyle, mode: mode_t) throws {
        func writeAll(_ path: String, flags: Int32) throws {
            let fd = open(path, flags | O_WRONLY | O_CLOEXEC, mode)
            guard fd >= 0 else { throw TestError("open \(path): \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            var done = 0
            while done < bytes.count {
                let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, bytes.count - done) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw TestError("write \(path): \(String(cString: strerror(errno)))") }
                done += n
            }
            // chmod only when needed: an in-place write should make no IN_ATTRIB event of its own.
            var info = stat()
            guard fstat(fd, &info) == 0 else { throw TestError("fstat \(path): \(String(cString: strerror(errno)))") }
            if info.st_mode & 0o7777 != mode {
                guard fchmod(fd, mode) == 0 else { throw TestError("fchmod \(path): \(String(cString: strerror(errno)))") }
            }
        }
        switch style {
        case .inPlace:
            try writeAll(url.path, flags: O_CREAT | O_TRUNC)
        case .rename:
            let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(UInt32.random(in: 0...UInt32.max))")
            try writeAll(temporary.path, flags: O_CREAT | O_EXCL)
            guard Glibc.rename(temporary.path, url.path) == 0 else { throw TestError("rename: \(String(cString: strerror(errno)))") }
        case .deleteAndCreate:
            guard unlink(url.path) == 0 || errno == ENOENT else { throw TestError("unlink: \(String(cString: strerror(errno)))") }
            Thread.sleep(forTimeInterval: 0.02)
            try writeAll(url.path, flags: O_CREAT | O_EXCL)
        }
    }

    package static func writeFile(_ url: URL, _ text: String, mode: mode_t = 0o644) throws {
        try write(Array(text.utf8), to: url, style: .inPlace, mode: mode)
    }

    /// Puts a copy of the real hello at `name` in the folder (by write + rename), with `mode`;
    /// `trailer` bytes appended make it a different file (an ELF ignores bytes after its end);
    /// `truncatedTo` keeps only that many bytes (a half upload).
    @discardableResult
    package func installHello(as name: String, mode: mode_t = 0o755, trailer: String? = nil, truncatedTo: Int? = nil) throws -> URL {
        var bytes = try [UInt8](Data(contentsOf: sourceBinary))
        if let trailer { bytes += Array(trailer.utf8) }
        if let truncatedTo { bytes = Array(bytes.prefix(truncatedTo)) }
        let url = directory.appendingPathComponent(name)
        try HelloProcess.write(bytes, to: url, style: .rename, mode: mode)
        return url
    }

    /// Names of the staged releases (`<Ver>-<sha12>`), sorted.
    package func releases() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: releasesURL.path)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
    }
}
#endif
