#if os(Linux)
import Foundation
import Glibc

struct HelloError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// How a process ended (from a `waitpid` status).
enum ExitStatus: Equatable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    init(waitStatus: Int32) {
        // WIFEXITED / WEXITSTATUS / WTERMSIG are C macros Swift cannot import.
        if waitStatus & 0x7f == 0 {
            self = .exited((waitStatus >> 8) & 0xff)
        } else {
            self = .signaled(waitStatus & 0x7f)
        }
    }

    var description: String {
        switch self {
        case .exited(let code): return "exited with \(code)"
        case .signaled(let sig): return "killed by signal \(sig)"
        }
    }
}

/// Where `swift build` / `swift test` put the `hello` executable (or another product, such as
/// `vapor-hello`).
enum HelloBinary {
    static func locate(_ name: String = "hello") throws -> URL {
        let fm = FileManager.default
        var candidates: [URL] = []
        if name == "hello", let explicit = ProcessInfo.processInfo.environment["BATON_HELLO_BINARY"] {
            candidates.append(URL(fileURLWithPath: explicit))
        }
        // On Linux the test bundle is an executable in the products directory.
        if let exe = try? fm.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            candidates.append(URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent(name))
        }
        candidates.append(Bundle.main.bundleURL.appendingPathComponent(name))
        for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
            candidates.append(bundle.bundleURL.deletingLastPathComponent().appendingPathComponent(name))
        }
        for candidate in candidates where fm.isExecutableFile(atPath: candidate.path) {
            return candidate
        }
        throw HelloError("\(name) binary not found; looked at \(candidates.map(\.path)). Build it with `swift build --product \(name)` or set BATON_HELLO_BINARY.")
    }
}

/// One `hello` master started from a private copy of the binary in a fresh temp directory (so a
/// test can replace the binary by rename), with stdout+stderr captured to `hello.log` there.
final class HelloProcess {
    let directory: URL
    /// The copy the master runs (and re-runs on SIGHUP).
    let executable: URL
    let logURL: URL
    let port: UInt16
    let masterPid: pid_t
    let arguments: [String]
    /// The `hello` built by SwiftPM (copied, never modified).
    let sourceBinary: URL
    private var masterStartTime: UInt64 = 0
    private(set) var exitStatus: ExitStatus?
    /// Every process of this test we have seen (pid → start time), killed in `cleanUp`.
    private var seen: [pid_t: UInt64] = [:]
    private var cleanedUp = false

    /// How the master is told what to run.
    enum Mode {
        /// `--port N`: hello upgrades to the `hello` in its folder on SIGHUP.
        case port
        /// The seed workflow: `hello.watch.conf` in the folder (HttpPort = a free port, BinName
        /// `hello`), read with `--config <absolute path>` or, with `passConfig: false`, found
        /// in the working directory as `./app` does.
        case watchConf(ver: String, delaySecond: Double, passConfig: Bool)
    }

    /// `hello.watch.conf` in the folder (written only in `.watchConf` mode).
    var configURL: URL { directory.appendingPathComponent("hello.watch.conf") }
    /// `<folder>/.baton/releases`.
    var releasesURL: URL { directory.appendingPathComponent(".baton/releases") }

    /// Copies the binary, starts the master on a free port (working directory: the temp folder)
    /// and waits (bounded) until `/hello` answers 200. `launcher` (absolute path first) is a
    /// command that execs the master, such as `["/usr/bin/taskset", "-c", "0"]`. `binary` names
    /// another product with hello's routes and options (`vapor-hello`).
    init(extraArguments: [String] = [], readyTimeout: TimeInterval = 30, mode: Mode = .port, launcher: [String] = [],
         binary: String = "hello") throws {
        let fm = FileManager.default
        sourceBinary = try HelloBinary.locate(binary)
        directory = fm.temporaryDirectory.appendingPathComponent("baton-it-\(UUID().uuidString.prefix(8))")
        try fm.createDirectory(at: directory, withIntermediateDirectories: true)
        executable = directory.appendingPathComponent(binary)
        logURL = directory.appendingPathComponent("hello.log")
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
        masterPid = try HelloProcess.spawn(argv: launcher + [executable.path] + arguments, log: logURL.path,
                                           workingDirectory: directory.path)
        masterStartTime = Proc.stat(masterPid)?.startTime ?? 0
        seen[masterPid] = masterStartTime
        try waitUntilServing(timeout: readyTimeout)
    }

    deinit { cleanUp() }

    /// Starts `argv` in `workingDirectory` (the master creates ./.baton/control.sock and
    /// reads ./hello.watch.conf there), output to `log`, with the test's environment minus
    /// anything that would make hello think it is a worker or talk to a service manager.
    private static func spawn(argv: [String], log: String, workingDirectory: String) throws -> pid_t {
        try spawnProcess(argv: argv, environment: cleanEnvironment(), stdinPath: "/dev/null",
                         outputPath: log, workingDirectory: workingDirectory)
    }

    // MARK: Talking to it

    /// One request on a fresh connection.
    func get(_ path: String = "/hello", timeout: TimeInterval = 10) -> Result<HTTPResponse, HTTPFailure> {
        httpGetOnce(port: port, path: path, timeout: timeout)
    }

    /// The pid in a fresh `/hello` answer, nil if the request failed.
    func servingPid() -> pid_t? {
        if case .success(let r) = get(), r.status == 200 { return r.pid }
        return nil
    }

    func signal(_ sig: Int32) {
        guard exitStatus == nil else { return }
        kill(masterPid, sig)
    }

    private func waitUntilServing(timeout: TimeInterval) throws {
        let deadline = Date().addingTimeInterval(timeout)
        var last = "no attempt"
        while Date() < deadline {
            if let status = reap() {
                throw HelloError("hello master \(status) before serving\n--- hello log ---\n\(logExcerpt())")
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
        throw HelloError("hello did not answer 200 on /hello within \(timeout) s (last: \(last))\n--- hello log ---\n\(logExcerpt())")
    }

    // MARK: Processes

    /// True while the master has not exited (and has not been reaped).
    var isRunning: Bool { reap() == nil }

    /// Non-blocking waitpid on the master; its status once it has exited.
    @discardableResult
    func reap() -> ExitStatus? {
        if let exitStatus { return exitStatus }
        var status: Int32 = 0
        let rc = waitpid(masterPid, &status, WNOHANG)
        if rc == masterPid {
            exitStatus = ExitStatus(waitStatus: status)
        } else if rc < 0 && errno == ECHILD {
            exitStatus = .signaled(0)  // reaped elsewhere; should not happen
        }
        return exitStatus
    }

    /// Waits (bounded) for the master to exit and reaps it.
    func waitForExit(timeout: TimeInterval) -> ExitStatus? {
        poll(timeout: timeout, interval: 0.02) { reap() != nil }
        return exitStatus
    }

    /// SIGTERM, wait up to `timeout`, then SIGKILL. Always reaps the master.
    @discardableResult
    func stop(timeout: TimeInterval = 30) -> ExitStatus? {
        if let exitStatus { return exitStatus }
        trackChildren()
        kill(masterPid, SIGTERM)
        if let status = waitForExit(timeout: timeout) { return status }
        kill(masterPid, SIGKILL)
        _ = waitForExit(timeout: 10)
        return nil  // did not stop by itself
    }

    /// Live children of the master (its worker generations, or a successor being started).
    func children() -> [pid_t] {
        let kids = Proc.children(of: masterPid)
        for kid in kids { seen[kid.pid] = kid.startTime }
        return kids.map(\.pid).sorted()
    }

    /// Children including zombies the master has not reaped.
    func childrenIncludingZombies() -> [pid_t] {
        Proc.children(of: masterPid, includeZombies: true).map(\.pid).sorted()
    }

    private func trackChildren() {
        for kid in Proc.descendants(of: masterPid) { seen[kid.pid] = kid.startTime }
    }

    /// Remembers pids (e.g. workers seen in answers) so that `cleanUp` kills them if they linger.
    func track<S: Sequence>(_ pids: S) where S.Element == pid_t {
        for pid in pids where seen[pid] == nil {
            if let stat = Proc.stat(pid) { seen[pid] = stat.startTime }
        }
    }

    func track(_ pid: pid_t) { track([pid]) }

    /// Kills every process this test started and reaps the master; removes nothing on disk.
    func killAll() {
        // Candidates: the master's descendants, members of its process group started after it, and
        // any pid seen before. A pid is only killed if its start time still matches (no reuse).
        var targets: [pid_t: UInt64] = seen
        if exitStatus == nil {
            for kid in Proc.descendants(of: masterPid) { targets[kid.pid] = kid.startTime }
        }
        for process in Proc.all() where process.pgrp == masterPid && process.startTime >= masterStartTime {
            targets[process.pid] = process.startTime
        }
        if exitStatus == nil {
            kill(masterPid, SIGKILL)
            _ = waitForExit(timeout: 10)
        }
        for (pid, start) in targets where pid != masterPid {
            if let stat = Proc.stat(pid), stat.startTime == start, stat.state != "Z" {
                kill(pid, SIGKILL)
            }
        }
    }

    /// Kills everything and deletes the temp directory; with `keepLog` only the binaries go and
    /// the directory with `hello.log` stays for a post-mortem. Idempotent.
    func cleanUp(keepLog: Bool = false) {
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
    func replaceBinary(withScript script: String) throws {
        let next = directory.appendingPathComponent("hello.next")
        try Data(script.utf8).write(to: next)
        try installByRename(next)
    }

    /// Puts the real hello binary back, by rename.
    func restoreBinary() throws {
        let next = directory.appendingPathComponent("hello.next")
        try? FileManager.default.removeItem(at: next)
        try FileManager.default.copyItem(at: sourceBinary, to: next)
        try installByRename(next)
    }

    private func installByRename(_ next: URL) throws {
        guard chmod(next.path, 0o755) == 0 else { throw HelloError("chmod: \(String(cString: strerror(errno)))") }
        guard rename(next.path, executable.path) == 0 else {
            throw HelloError("rename: \(String(cString: strerror(errno)))")
        }
    }

    // MARK: Deploy files (watch.conf mode)

    /// watch.conf text with the seed's four keys, `Sha256` when given, and `extra` raw members.
    static func watchConf(port: UInt16, ver: String, delaySecond: Double, binName: String = "hello",
                          sha256: String? = nil, extra: String? = nil) -> String {
        var members = [#""HttpPort": "\#(port)""#, #""Ver": "\#(ver)""#, #""DelaySecond": \#(delaySecond)"#,
                       #""BinName": "\#(binName)""#]
        if let sha256 { members.append(#""Sha256": "\#(sha256)""#) }
        if let extra { members.append(extra) }
        return "{" + members.joined(separator: ", ") + "}\n"
    }

    /// The ways a deploy changes a file.
    enum WriteStyle: CaseIterable {
        /// open(O_TRUNC) + write + close on the file itself (same inode).
        case inPlace
        /// Written to a temporary name in the folder, then renamed over it (vim, rsync, scp).
        case rename
        /// Deleted, then created again a few milliseconds later.
        case deleteAndCreate
    }

    /// Writes `text` to watch.conf (mode 0644).
    func writeConfig(_ text: String, style: WriteStyle = .rename) throws {
        try HelloProcess.write(Array(text.utf8), to: configURL, style: style, mode: 0o644)
    }

    /// `touch hello.watch.conf`: only the timestamps change.
    func touchConfig() throws {
        guard utimes(configURL.path, nil) == 0 else { throw HelloError("utimes: \(String(cString: strerror(errno)))") }
    }

    /// Writes `bytes` to `url` in the given style and sets `mode` (whatever the umask).
    static func write(_ bytes: [UInt8], to url: URL, style: WriteStyle, mode: mode_t) throws {
        func writeAll(_ path: String, flags: Int32) throws {
            let fd = open(path, flags | O_WRONLY | O_CLOEXEC, mode)
            guard fd >= 0 else { throw HelloError("open \(path): \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            var done = 0
            while done < bytes.count {
                let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, bytes.count - done) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw HelloError("write \(path): \(String(cString: strerror(errno)))") }
                done += n
            }
            // chmod only when needed: an in-place write should make no IN_ATTRIB event of its own.
            var info = stat()
            guard fstat(fd, &info) == 0 else { throw HelloError("fstat \(path): \(String(cString: strerror(errno)))") }
            if info.st_mode & 0o7777 != mode {
                guard fchmod(fd, mode) == 0 else { throw HelloError("fchmod \(path): \(String(cString: strerror(errno)))") }
            }
        }
        switch style {
        case .inPlace:
            try writeAll(url.path, flags: O_CREAT | O_TRUNC)
        case .rename:
            let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(UInt32.random(in: 0...UInt32.max))")
            try writeAll(temporary.path, flags: O_CREAT | O_EXCL)
            guard Glibc.rename(temporary.path, url.path) == 0 else { throw HelloError("rename: \(String(cString: strerror(errno)))") }
        case .deleteAndCreate:
            guard unlink(url.path) == 0 || errno == ENOENT else { throw HelloError("unlink: \(String(cString: strerror(errno)))") }
            Thread.sleep(forTimeInterval: 0.02)
            try writeAll(url.path, flags: O_CREAT | O_EXCL)
        }
    }

    static func writeFile(_ url: URL, _ text: String, mode: mode_t = 0o644) throws {
        try write(Array(text.utf8), to: url, style: .inPlace, mode: mode)
    }

    /// Puts a copy of the real hello at `name` in the folder (by write + rename), with `mode`;
    /// `trailer` bytes appended make it a different file (an ELF ignores bytes after its end);
    /// `truncatedTo` keeps only that many bytes (a half upload).
    @discardableResult
    func installHello(as name: String, mode: mode_t = 0o755, trailer: String? = nil, truncatedTo: Int? = nil) throws -> URL {
        var bytes = try [UInt8](Data(contentsOf: sourceBinary))
        if let trailer { bytes += Array(trailer.utf8) }
        if let truncatedTo { bytes = Array(bytes.prefix(truncatedTo)) }
        let url = directory.appendingPathComponent(name)
        try HelloProcess.write(bytes, to: url, style: .rename, mode: mode)
        return url
    }

    /// Names of the staged releases (`<Ver>-<sha12>`), sorted.
    func releases() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: releasesURL.path)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
    }

    // MARK: Log

    var log: String {
        (try? String(contentsOf: logURL, encoding: .utf8)) ?? ""
    }

    /// The log, or its first and last lines when it is long (crash backtraces can be thousands).
    func logExcerpt(head: Int = 150, tail: Int = 250) -> String {
        let all = log.split(separator: "\n", omittingEmptySubsequences: false)
        guard all.count > head + tail else { return all.joined(separator: "\n") }
        return (all.prefix(head) + ["[… \(all.count - head - tail) lines left out, see \(logURL.path) …]"] + all.suffix(tail))
            .joined(separator: "\n")
    }

    /// Lines of the log that contain `needle`.
    func logLines(containing needle: String) -> [String] {
        log.split(separator: "\n").filter { $0.contains(needle) }.map(String.init)
    }

    func logCount(_ needle: String) -> Int {
        log.components(separatedBy: needle).count - 1
    }

    /// Waits (bounded) until `needle` occurs more than `after` times in the log.
    func waitForLog(_ needle: String, moreThan after: Int, timeout: TimeInterval) -> Bool {
        poll(timeout: timeout, interval: 0.05) { logCount(needle) > after }
    }
}
#endif
