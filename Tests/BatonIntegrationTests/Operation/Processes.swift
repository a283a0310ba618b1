#if os(Linux)
import Foundation
import Glibc

struct OperationError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Paths of the things the tests run.
enum Locations {
    /// The repository root, found from this file's path (Tests/BatonIntegrationTests/Operation/…).
    static let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Examples/python-worker/app.py (BATON_TEST_PYTHON_WORKER names another, e.g. a patched copy).
    static var pythonWorker: URL {
        if let other = ProcessInfo.processInfo.environment["BATON_TEST_PYTHON_WORKER"], !other.isEmpty {
            return URL(fileURLWithPath: other)
        }
        return repositoryRoot.appendingPathComponent("Examples/python-worker/app.py")
    }

    /// An executable product built beside the test bundle (`.build/debug/NAME`).
    static func product(_ name: String) throws -> String {
        var candidates: [String] = []
        if let folder = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            candidates.append(URL(fileURLWithPath: folder).deletingLastPathComponent().appendingPathComponent(name).path)
        }
        for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
            candidates.append(bundle.bundleURL.deletingLastPathComponent().appendingPathComponent(name).path)
        }
        candidates.append(repositoryRoot.appendingPathComponent(".build/debug/\(name)").path)
        for candidate in candidates where FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        throw OperationError("\(name) not found beside the test bundle (looked at \(candidates)); build it with `swift build --build-tests`")
    }

    /// python3: the system one when present (no pyenv shim in the way), else the first in PATH.
    static func python() throws -> String {
        try executable("python3", preferring: ["/usr/bin/python3"])
    }

    /// `name` from `preferring` or PATH, nil when absent.
    static func find(_ name: String, preferring: [String] = []) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        let candidates = preferring + path.split(separator: ":").map { "\($0)/\(name)" } + ["/usr/bin/\(name)", "/bin/\(name)"]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static func executable(_ name: String, preferring: [String] = []) throws -> String {
        guard let found = find(name, preferring: preferring) else { throw OperationError("\(name) not found in PATH") }
        return found
    }
}

/// The environment for a process under test: the test's own, less whatever would make it think a
/// service manager or a Baton master started it, plus `extra`.
func cleanEnvironment(_ extra: [String: String] = [:]) -> [String: String] {
    var environment = ProcessInfo.processInfo.environment.filter { name, _ in
        !name.hasPrefix("LISTEN_") && !name.hasPrefix("BATON_") && !name.hasPrefix("WATCHDOG_")
            && !["NOTIFY_SOCKET", "RUNTIME_DIRECTORY", "INVOCATION_ID"].contains(name)
    }
    for (name, value) in extra { environment[name] = value }
    return environment
}

/// Reserves a free TCP port on 127.0.0.1 (bind to port 0, read it, close).
func freePort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw OperationError("socket: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard ok else { throw OperationError("bind: \(String(cString: strerror(errno)))") }
    return UInt16(bigEndian: address.sin_port)
}

/// A process the test started: in its own process group (the workers a master spawns join it),
/// in a given working directory, with stdout and stderr appended to a log file.
final class TestProcess {
    let pid: pid_t
    let command: [String]
    let logPath: String
    private(set) var status: ExitStatus?
    /// Processes seen in this test's process tree (pid → start time), killed by ``killAll()``.
    private var seen: [pid_t: UInt64] = [:]

    /// Starts `executable` with `arguments` in `directory`. The working directory is set by a
    /// `/bin/sh` that then execs the program, so the pid is the program's.
    init(_ executable: String, _ arguments: [String], directory: String, environment: [String: String], log: String) throws {
        command = [executable] + arguments
        logPath = log
        let argv = ["/bin/sh", "-c", #"cd "$0" || exit 127; exec "$@""#, directory, executable] + arguments
        pid = try spawnProcess(argv: argv, environment: environment, stdinPath: "/dev/null", outputPath: log)
        if let stat = Proc.stat(pid) { seen[pid] = stat.startTime }
    }

    deinit { killAll() }

    var isRunning: Bool { reap() == nil }

    /// Non-blocking wait; the exit status once the process has exited.
    @discardableResult
    func reap() -> ExitStatus? {
        if let status { return status }
        var raw: Int32 = 0
        let rc = waitpid(pid, &raw, WNOHANG)
        if rc == pid { status = ExitStatus(waitStatus: raw) } else if rc < 0 && errno == ECHILD { status = .signaled(0) }
        return status
    }

    /// Waits (bounded) for the process to exit.
    func waitForExit(timeout: TimeInterval) -> ExitStatus? {
        poll(timeout: timeout, interval: 0.02) { reap() != nil }
        return status
    }

    func signal(_ signal: Int32) {
        if reap() == nil { kill(pid, signal) }
    }

    /// The live children of the process (a master's workers).
    func children() -> [pid_t] {
        let kids = Proc.children(of: pid)
        for kid in kids { seen[kid.pid] = kid.startTime }
        return kids.map(\.pid).sorted()
    }

    /// Remembers `pid` (e.g. a worker seen in an answer) so that ``killAll()`` kills it if it lingers.
    func track(_ pid: pid_t) {
        if seen[pid] == nil, let stat = Proc.stat(pid) { seen[pid] = stat.startTime }
    }

    /// SIGKILLs the process, everything in its process group and every process of its tree seen so
    /// far (checked by start time, so a reused pid is never hit), and reaps it. Idempotent.
    func killAll() {
        var targets = seen
        for process in Proc.descendants(of: pid) { targets[process.pid] = process.startTime }
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

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func logCount(_ needle: String) -> Int { log.components(separatedBy: needle).count - 1 }

    /// Waits (bounded) until `needle` occurs more than `count` times in the log.
    @discardableResult
    func waitForLog(_ needle: String, moreThan count: Int = 0, timeout: TimeInterval) -> Bool {
        poll(timeout: timeout, interval: 0.05) { logCount(needle) > count }
    }

    /// The log, or its head and tail when long.
    func logExcerpt(head: Int = 120, tail: Int = 200) -> String {
        let lines = log.split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.count > head + tail else { return lines.joined(separator: "\n") }
        return (lines.prefix(head) + ["[… \(lines.count - head - tail) lines left out …]"] + lines.suffix(tail)).joined(separator: "\n")
    }
}

/// What a finished command printed, and how it ended.
struct CommandResult: CustomStringConvertible {
    var status: ExitStatus
    var output: String
    var exitCode: Int32? { if case .exited(let code) = status { return code } else { return nil } }
    var description: String { "\(status), output:\n\(output)" }
}

/// Runs a command to completion (bounded: killed after `timeout`), stdout and stderr together.
func runCommand(_ executable: String, _ arguments: [String], directory: String, environment: [String: String] = cleanEnvironment(),
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
        throw OperationError("\(([executable] + arguments).joined(separator: " ")) did not finish within \(timeout) s; output:\n\(process.log)")
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
func spawnProcess(argv: [String], environment: [String: String], stdinPath: String, outputPath: String,
                  workingDirectory: String? = nil) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    if let workingDirectory {
        guard let addChdir else { throw OperationError("posix_spawn_file_actions_addchdir_np is not available") }
        let rc = addChdir(&actions, workingDirectory)
        guard rc == 0 else { throw OperationError("addchdir \(workingDirectory): \(String(cString: strerror(rc)))") }
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
    guard rc == 0 else { throw OperationError("posix_spawn \(argv[0]): \(String(cString: strerror(rc)))") }
    return pid
}

/// CLOCK_MONOTONIC in microseconds, as `MONOTONIC_USEC=` carries it.
func monotonicMicroseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
}

/// Fills a `sockaddr_un` for `path` ('@' first: the abstract namespace) and calls `body` with it.
func withUnixAddress<T>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) throws -> T {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    var bytes = Array(path.utf8)
    if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
    let capacity = MemoryLayout.size(ofValue: address.sun_path)
    guard bytes.count < capacity else { throw OperationError("unix socket path too long: \(path)") }
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (index, byte) in bytes.enumerated() { raw[index] = byte }
    }
    let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (bytes.first == 0 ? 0 : 1))
    return withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) } }
}

/// A stand-in for systemd's notify socket: a datagram socket the test reads sd_notify messages from.
final class NotifyListener {
    let path: String
    private let fd: Int32

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw OperationError("socket: \(String(cString: strerror(errno)))") }
        self.path = path
        let rc = try withUnixAddress(path) { bind(fd, $0, $1) }
        guard rc == 0 else {
            let error = errno
            close(fd)
            throw OperationError("bind \(path): \(String(cString: strerror(error)))")
        }
    }

    deinit {
        close(fd)
        if !path.hasPrefix("@") { unlink(path) }
    }

    /// The next datagram, or nil when none comes within `timeout`.
    func next(timeout: TimeInterval) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let left = deadline.timeIntervalSinceNow
            if left <= 0 { return nil }
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = Glibc.poll(&descriptor, 1, Int32(max(1, left * 1000)))
            if ready < 0 && errno == EINTR { continue }
            if ready <= 0 { continue }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if count > 0 { return String(decoding: buffer[0..<count], as: UTF8.self) }
        }
    }
}

/// Sends one raw line to a unix stream socket and reads one line back (bounded).
func unixRoundTrip(path: String, send line: String, timeout: TimeInterval = 10) throws -> String {
    try unixRoundTrip(path: path, sendBytes: Array(line.utf8), timeout: timeout)
}

/// Sends `bytes` (a send the server stops reading may fail when `halfClose`: the answer is what
/// counts), optionally half-closes, and reads one line back (bounded).
func unixRoundTrip(path: String, sendBytes bytes: [UInt8], halfClose: Bool = false, timeout: TimeInterval = 10) throws -> String {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw OperationError("socket: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    guard try withUnixAddress(path, { connect(fd, $0, $1) }) == 0 else {
        throw OperationError("connect \(path): \(String(cString: strerror(errno)))")
    }
    var sent = 0
    while sent < bytes.count {
        let count = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, min($0.count, 1 << 16), Int32(MSG_NOSIGNAL)) }
        if count > 0 { sent += count; continue }
        if halfClose { break }
        throw OperationError("send: \(String(cString: strerror(errno)))")
    }
    if halfClose { shutdown(fd, Int32(SHUT_WR)) }
    var received: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while !received.contains(10) {
        let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if count > 0 { received += chunk[0..<count]; continue }
        if count < 0 && errno == EINTR { continue }
        if count < 0 { throw OperationError("recv: \(String(cString: strerror(errno))) after \(received.count) bytes") }
        break  // EOF
    }
    return String(decoding: received, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}

/// The key/value fields of an sd_notify datagram.
func notifyFields(_ message: String) -> [String: String] {
    var fields: [String: String] = [:]
    for line in message.split(separator: "\n") {
        guard let equals = line.firstIndex(of: "=") else { continue }
        fields[String(line[..<equals])] = String(line[line.index(after: equals)...])
    }
    return fields
}
#endif
