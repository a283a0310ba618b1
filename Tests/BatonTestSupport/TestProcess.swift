#if os(Linux)
import Foundation
import Glibc
// How a process ended is Baton's own `ExitStatus` (package access), so the tests read a `waitpid`
// status as the master does; the tests see the type through this module. No `@testable`: this is
// a plain target, and `swift build -c release` (every target) builds it too.
import Baton
@_exported import enum Baton.ExitStatus

/// A process the test started: in its own process group (the workers a master spawns join it),
/// in a given working directory, with stdout and stderr appended to a log file.
package class TestProcess {
    package let pid: pid_t
    package let command: [String]
    package let logPath: String
    package private(set) var status: ExitStatus?
    /// Processes seen in this test's process tree (pid → start time), killed by ``killAll()``.
    private var seen: [pid_t: UInt64] = [:]

    /// Starts `executable` (a path) with `arguments` in `directory`, with `environment`, output
    /// appended to `log`.
    package init(_ executable: String, _ arguments: [String], directory: String, environment: [String: String], log: String) throws {
        command = [executable] + arguments
        logPath = log
        pid = try spawnProcess(argv: command, environment: environment, stdinPath: "/dev/null", outputPath: log,
                               workingDirectory: directory)
        if let stat = Proc.stat(pid) { seen[pid] = stat.startTime }
    }

    deinit { killAll() }

    // MARK: Its life

    /// True while the process has not exited (and has not been reaped).
    package var isRunning: Bool { reap() == nil }

    /// Non-blocking waitpid; the exit status once the process has exited.
    @discardableResult
    package func reap() -> ExitStatus? {
        if let status { return status }
        var raw: Int32 = 0
        let rc = waitpid(pid, &raw, WNOHANG)
        if rc == pid {
            status = ExitStatus(waitStatus: raw)
        } else if rc < 0 && errno == ECHILD {
            status = .signaled(0)  // reaped elsewhere; should not happen
        }
        return status
    }

    /// Waits (bounded) for the process to exit and reaps it.
    package func waitForExit(timeout: TimeInterval) -> ExitStatus? {
        poll(timeout: timeout, interval: 0.02) { reap() != nil }
        return status
    }

    package func signal(_ signal: Int32) {
        if reap() == nil { kill(pid, signal) }
    }

    /// SIGTERM, wait up to `timeout`, then SIGKILL. Always reaps the process; nil when it did not
    /// stop by itself.
    @discardableResult
    package func stop(timeout: TimeInterval = 30) -> ExitStatus? {
        if let status { return status }
        for kid in Proc.descendants(of: pid) { seen[kid.pid] = kid.startTime }
        kill(pid, SIGTERM)
        if let status = waitForExit(timeout: timeout) { return status }
        kill(pid, SIGKILL)
        _ = waitForExit(timeout: 10)
        return nil
    }

    // MARK: Its children

    /// Live children of the process (a master's worker generations, or a successor being
    /// started), without the master's keeper, which is no worker.
    package func children() -> [pid_t] {
        let kids = Proc.children(of: pid).filter { !Proc.isKeeper($0.pid) }
        for kid in kids { seen[kid.pid] = kid.startTime }
        return kids.map(\.pid).sorted()
    }

    /// Children including zombies the process has not reaped.
    package func childrenIncludingZombies() -> [pid_t] {
        Proc.children(of: pid, includeZombies: true).filter { !Proc.isKeeper($0.pid) }.map(\.pid).sorted()
    }

    /// Remembers pids (e.g. workers seen in answers) so that ``killAll()`` kills them if they linger.
    package func track<S: Sequence>(_ pids: S) where S.Element == pid_t {
        for pid in pids where seen[pid] == nil {
            if let stat = Proc.stat(pid) { seen[pid] = stat.startTime }
        }
    }

    package func track(_ pid: pid_t) { track([pid]) }

    /// SIGKILLs the process, everything in its process group and every process of its tree seen so
    /// far (checked by start time, so a reused pid is never hit), and reaps it. Idempotent.
    package func killAll() {
        // Candidates: the descendants, members of its process group started after it, and any pid
        // seen before.
        var targets = seen
        if status == nil {
            for process in Proc.descendants(of: pid) { targets[process.pid] = process.startTime }
        }
        let leaderStart = seen[pid] ?? 0
        for process in Proc.all() where process.pgrp == pid && process.startTime >= leaderStart {
            targets[process.pid] = process.startTime
        }
        if reap() == nil {
            kill(pid, SIGKILL)
            _ = waitForExit(timeout: 10)
        }
        for (other, start) in targets where other != pid {
            if let stat = Proc.stat(other), stat.startTime == start, stat.state != "Z" { kill(other, SIGKILL) }
        }
        seen = [:]
    }

    // MARK: Its log

    package var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    package func logCount(_ needle: String) -> Int { log.components(separatedBy: needle).count - 1 }

    /// Lines of the log that contain `needle`.
    package func logLines(containing needle: String) -> [String] {
        log.split(separator: "\n").filter { $0.contains(needle) }.map(String.init)
    }

    /// Waits (bounded) until `needle` occurs more than `count` times in the log.
    @discardableResult
    package func waitForLog(_ needle: String, moreThan count: Int = 0, timeout: TimeInterval) -> Bool {
        poll(timeout: timeout, interval: 0.05) { logCount(needle) > count }
    }

    /// The log, or its first and last lines when it is long (crash backtraces can be thousands).
    package func logExcerpt(head: Int = 150, tail: Int = 250) -> String {
        let lines = log.split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.count > head + tail else { return lines.joined(separator: "\n") }
        return (lines.prefix(head) + ["[… \(lines.count - head - tail) lines left out, see \(logPath) …]"] + lines.suffix(tail))
            .joined(separator: "\n")
    }
}

/// What a finished command printed, and how it ended.
package struct CommandResult: CustomStringConvertible {
    package var status: ExitStatus
    package var output: String
    package var exitCode: Int32? { if case .exited(let code) = status { return code } else { return nil } }
    package var description: String { "\(status), output:\n\(output)" }
}

/// Runs a command to completion (bounded: killed after `timeout`), stdout and stderr together.
package func runCommand(_ executable: String, _ arguments: [String], directory: String, environment: [String: String] = cleanEnvironment(),
                        timeout: TimeInterval = 60, whileWaiting: () -> Void = {}) throws -> CommandResult {
    let output = "\(directory)/.command-\(UUID().uuidString.prefix(8)).out"
    defer { unlink(output) }
    let process = try TestProcess(executable, arguments, directory: directory, environment: environment, log: output)
    poll(timeout: timeout, interval: 0.02) {
        whileWaiting()
        return process.reap() != nil
    }
    guard let status = process.reap() else {
        process.killAll()
        throw TestError("\(([executable] + arguments).joined(separator: " ")) did not finish within \(timeout) s; output:\n\(process.log)")
    }
    return CommandResult(status: status, output: process.log)
}

/// `posix_spawn_file_actions_addchdir_np` (glibc ≥ 2.29), which Swift's Glibc module hides
/// behind `_GNU_SOURCE`; looked up at run time.
private typealias AddChdir = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32
private let addChdir: AddChdir? = dlsym(nil, "posix_spawn_file_actions_addchdir_np").map { unsafeBitCast($0, to: AddChdir.self) }
/// `posix_spawn_file_actions_addclosefrom_np` (glibc ≥ 2.34), likewise hidden.
private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
private let addCloseFrom: AddCloseFrom? = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np").map { unsafeBitCast($0, to: AddCloseFrom.self) }

/// posix_spawn with a clean signal state (the test process ignores SIGPIPE and its threads block
/// signals) and no descriptor but 0–2, in a new process group, in `workingDirectory` when given.
package func spawnProcess(argv: [String], environment: [String: String], stdinPath: String, outputPath: String,
                  workingDirectory: String? = nil) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    if let workingDirectory {
        guard let addChdir else { throw TestError("posix_spawn_file_actions_addchdir_np is not available") }
        let rc = addChdir(&actions, workingDirectory)
        guard rc == 0 else { throw TestError("addchdir \(workingDirectory): \(String(cString: strerror(rc)))") }
    }
    posix_spawn_file_actions_addopen(&actions, 0, stdinPath, O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_APPEND | O_CREAT, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    // The test runner's own descriptors (many without close-on-exec) stay out of the process.
    _ = addCloseFrom?(&actions, 3)
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var empty = sigset_t()
    sigemptyset(&empty)
    posix_spawnattr_setsigmask(&attributes, &empty)
    var defaults = sigset_t()
    sigemptyset(&defaults)
    for signal in [SIGPIPE, SIGHUP, SIGINT, SIGTERM, SIGQUIT, SIGCHLD, SIGUSR1, SIGUSR2] { sigaddset(&defaults, signal) }
    posix_spawnattr_setsigdefault(&attributes, &defaults)
    posix_spawnattr_setpgroup(&attributes, 0)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))
    let cArgv: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
    let cEnvp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer {
        cArgv.forEach { free($0) }
        cEnvp.forEach { free($0) }
    }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, argv[0], &actions, &attributes, cArgv, cEnvp)
    guard rc == 0 else { throw TestError("posix_spawn \(argv[0]): \(String(cString: strerror(rc)))") }
    return pid
}

#endif
