import Foundation
import XCTest
@testable import Baton
import CBaton

/// Spawns a real child through Baton's spawner and has it report what it received.
final class SpawnerTests: XCTestCase {
    private static let reporter = #"""
        import os, json, socket
        fds = []
        for fd in range(3, 512):
            try:
                os.fstat(fd); fds.append(fd)
            except OSError:
                pass
        ports = {}
        for fd in fds:
            s = socket.socket(fileno=os.dup(fd))
            ports[fd] = [s.getsockname()[1], s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN), os.get_inheritable(fd)]
            s.detach()
        status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
        json.dump({"pid": os.getpid(), "ppid": os.getppid(), "fds": fds, "ports": ports,
                   "blocked": int(status["SigBlk"], 16), "ignored": int(status["SigIgn"], 16),
                   "env": dict(os.environ)}, open(os.environ["REPORT"], "w"))
        """#

    func testChildGetsListenersAtFd3OnwardsAndNothingElse() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("baton-spawn-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let report = dir.appendingPathComponent("report.json").path

        let first = try Listener.bind(.tcp(host: "127.0.0.1", port: 0), name: "first")
        let second = try Listener.bind(.tcp(host: "127.0.0.1", port: 0), name: "second")
        defer { first.close(); second.close() }
        // A descriptor without close-on-exec, as NIO leaves client sockets: it must not leak.
        var leaky: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&leaky), 0)
        defer { close(leaky[0]); close(leaky[1]) }

        let plan = LaunchPlan(
            executable: "/bin/sh",
            arguments: ["-c", "exec python3 -c \"$PY\""],
            // A LISTEN_PID from the plan (or anywhere) is replaced by the child's own.
            version: "7", environment: ["REPORT": report, "PY": Self.reporter, "LISTEN_PID": "1"])
        // Listed in reverse fd order, so that placing one must not clobber the other.
        let listeners = [second, first]
        let env = WorkerEnvironment.make(inherited: ProcessEnvironment.current(), plan: plan, listeners: listeners,
                                         generation: 4, notifySocketPath: "@test", masterPID: getpid())
        // Make the spawning thread look like a Swift/NIO thread: signals blocked, one ignored.
        var blocked = sigset_t(), previous = sigset_t()
        sigemptyset(&blocked)
        for signal in [SIGHUP, SIGTERM, SIGUSR1, SIGCHLD] { sigaddset(&blocked, signal) }
        pthread_sigmask(SIG_BLOCK, &blocked, &previous)
        let previousUSR2 = signal(SIGUSR2, SIG_IGN)
        let spawner = Spawner()  // its thread inherits this thread's mask
        pthread_sigmask(SIG_SETMASK, &previous, nil)
        let pid = try await spawner.spawn(plan, environment: env, listeners: listeners)
        signal(SIGUSR2, previousUSR2)
        await spawner.shutdown()
        var status: Int32 = 0
        XCTAssertEqual(waitpid(pid, &status, 0), pid)
        XCTAssertEqual(ExitStatus(waitStatus: status), .exited(0))

        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report))) as! [String: Any]
        let childEnv = json["env"] as! [String: String]
        XCTAssertEqual(json["pid"] as? Int, Int(pid), "the pid we got is the worker's (sh execs python3 in place)")
        XCTAssertEqual(json["ppid"] as? Int, Int(getpid()))
        XCTAssertEqual(childEnv["LISTEN_PID"], String(pid), "LISTEN_PID must equal the worker's own pid")
        XCTAssertEqual(childEnv.keys.filter { $0 == "LISTEN_PID" }.count, 1)
        XCTAssertEqual(childEnv["LISTEN_FDS"], "2")
        XCTAssertEqual(childEnv["LISTEN_FDNAMES"], "second:first")
        XCTAssertEqual(childEnv["BATON_GENERATION"], "4")
        XCTAssertEqual(childEnv["BATON_VERSION"], "7")
        XCTAssertEqual(json["fds"] as? [Int], [3, 4], "every other descriptor is closed")
        let ports = json["ports"] as! [String: [Any]]
        XCTAssertEqual(ports["3"]?[0] as? Int, second.port)
        XCTAssertEqual(ports["4"]?[0] as? Int, first.port)
        XCTAssertEqual(ports["3"]?[1] as? Int, 1, "still listening")
        XCTAssertEqual(ports["3"]?[2] as? Bool, true, "close-on-exec cleared at fd 3")

        // Nothing blocked, nothing ignored but what python3 ignores itself (SIGPIPE, SIGXFSZ) and
        // glibc's internal signals 32 and 33.
        XCTAssertEqual(json["blocked"] as? Int, 0)
        let ignored = (json["ignored"] as? Int ?? -1) & ~((1 << 12) | (1 << 24) | (1 << 31) | (1 << 32))
        XCTAssertEqual(ignored, 0, "ignored signal mask \(String(json["ignored"] as? Int ?? -1, radix: 16))")
    }

    func testMissingOrNonExecutableFilesAreReportedBeforeSpawning() async throws {
        let spawner = Spawner()
        defer { Task { await spawner.shutdown() } }
        do {
            _ = try await spawner.spawn(LaunchPlan(executable: "/nonexistent/app"), environment: [:], listeners: [])
            XCTFail("spawned a missing file")
        } catch {
            XCTAssertEqual("\(error)", "cannot start /nonexistent/app: No such file or directory")
        }
        let plain = FileManager.default.temporaryDirectory.appendingPathComponent("baton-plain-\(getpid())").path
        XCTAssertTrue(FileManager.default.createFile(atPath: plain, contents: Data("#!/bin/sh\n".utf8), attributes: [.posixPermissions: 0o644]))
        defer { unlink(plain) }
        do {
            _ = try await spawner.spawn(LaunchPlan(executable: plain), environment: [:], listeners: [])
            XCTFail("spawned a non-executable file")
        } catch {
            XCTAssertEqual("\(error)", "cannot start \(plain): Permission denied")
        }
        do {
            _ = try await spawner.spawn(LaunchPlan(executable: "/tmp"), environment: [:], listeners: [])
            XCTFail("spawned a directory")
        } catch {
            XCTAssertEqual("\(error)", "cannot start /tmp: Is a directory")
        }
    }

    /// Failures of execve itself (past the checks made before spawning) are errors of `spawn`,
    /// with their errno (the child that failed to exec is reaped by `baton_spawn`).
    func testExecFailureIsReportedWithErrno() async throws {
        let spawner = Spawner()
        defer { Task { await spawner.shutdown() } }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("baton-exec-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cases: [(String, String)] = [
            ("#!/nonexistent/interpreter\n", "No such file or directory"),  // missing interpreter
            ("\u{7f}ELF but not really", "Exec format error"),             // not a program at all
        ]
        for (index, (content, message)) in cases.enumerated() {
            let path = "\(dir)/app\(index)"
            XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(content.utf8), attributes: [.posixPermissions: 0o755]))
            do {
                let pid = try await spawner.spawn(LaunchPlan(executable: path), environment: [:], listeners: [])
                XCTFail("spawned \(path) as pid \(pid)")
            } catch {
                XCTAssertEqual("\(error)", "cannot start \(path): \(message)")
            }
        }
    }

    /// The control descriptor goes right after the listeners; the child's mask is empty even when
    /// every signal is blocked in the spawning thread.
    func testExtraDescriptorFollowsListenersAndMaskIsEmpty() async throws {
        let listener = try Listener.bind(.tcp(host: "127.0.0.1", port: 0), name: "web")
        defer { listener.close() }
        var control: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&control), 0)
        defer { close(control[0]); close(control[1]) }
        var all = sigset_t(), previous = sigset_t()
        sigfillset(&all)
        pthread_sigmask(SIG_SETMASK, &all, &previous)
        let spawner = Spawner()
        pthread_sigmask(SIG_SETMASK, &previous, nil)
        // The child reports its pid, LISTEN_PID and blocked mask, then (as ls, same process) its
        // descriptors, all on the pipe's write end: fd 4.
        let script = #"echo pid=$$ env=$LISTEN_PID $(grep SigBlk /proc/$$/status) >&4; exec ls /proc/self/fd >&4"#
        let pid = try await spawner.spawn(LaunchPlan(executable: "/bin/sh", arguments: ["-c", script]),
                                          environment: ["PATH": "/usr/bin:/bin"], descriptors: [listener.fd, control[1]])
        await spawner.shutdown()
        close(control[1])
        control[1] = -1
        var status: Int32 = 0
        XCTAssertEqual(waitpid(pid, &status, 0), pid)
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 512)
        while true {
            let n = read(control[0], &buffer, buffer.count)
            guard n > 0 else { break }
            output += buffer[0..<n]
        }
        let lines = String(decoding: output, as: UTF8.self).split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.first, "pid=\(pid) env=\(pid) SigBlk: 0000000000000000")
        // 0 1 2 inherited as they are, 3 the listener, 4 the control pipe, and nothing else but
        // the directory ls itself opened after the exec.
        let fds = lines.dropFirst().compactMap { Int($0) }
        XCTAssertEqual(Array(fds.prefix(5)), [0, 1, 2, 3, 4], "\(lines)")
        XCTAssertLessThanOrEqual(fds.count, 6, "\(lines)")
    }

    /// The fallback for kernels before 5.9 closes exactly the range it is given, like close_range.
    func testClosingOneByOneClosesTheRangeAndNothingAround() throws {
        var pair: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&pair), 0)
        defer { Glibc.close(pair[0]); Glibc.close(pair[1]) }
        for close in [baton_close_each, baton_close_range] {
            // Ten copies at fixed numbers, far above what this process has open.
            let fds = Array(Int32(700)..<710)
            for fd in fds {
                XCTAssertEqual(fcntl(fd, F_GETFD), -1, "descriptor \(fd) is already in use")
                XCTAssertEqual(dup2(pair[0], fd), fd)
            }
            defer { for fd in fds { Glibc.close(fd) } }
            XCTAssertEqual(close(703, 706), 0)
            let open = fds.map { fcntl($0, F_GETFD) >= 0 }
            XCTAssertEqual(open, [true, true, true, false, false, false, false, true, true, true])
            // An empty range closes nothing.
            XCTAssertEqual(close(708, 707), 0)
            XCTAssertTrue(fcntl(707, F_GETFD) >= 0 && fcntl(708, F_GETFD) >= 0)
        }
    }
}
