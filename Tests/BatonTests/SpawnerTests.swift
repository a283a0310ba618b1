import Foundation
import XCTest
@testable import Baton

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
        json.dump({"pid": os.getpid(), "ppid": os.getppid(), "fds": fds, "ports": ports,
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
            arguments: ["-c", "grep -E '^Sig(Blk|Ign)' /proc/$$/status > \"$REPORT.sig\"; exec python3 -c \"$PY\""],
            version: "7", environment: ["REPORT": report, "PY": Self.reporter])
        // Listed in reverse fd order, so that placing one must not clobber the other.
        let listeners = [second, first]
        let env = WorkerEnvironment.make(inherited: ProcessEnvironment.current(), plan: plan, listeners: listeners,
                                         generation: 4, notifySocketPath: "@test", masterPID: getpid())
        let spawner = Spawner()
        let pid = try await spawner.spawn(plan, environment: env, listeners: listeners)
        await spawner.shutdown()
        var status: Int32 = 0
        XCTAssertEqual(waitpid(pid, &status, 0), pid)
        XCTAssertEqual(ExitStatus(waitStatus: status), .exited(0))

        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report))) as! [String: Any]
        let childEnv = json["env"] as! [String: String]
        XCTAssertEqual(json["pid"] as? Int, Int(pid), "the shim execs in place: the pid we got is the worker's")
        XCTAssertEqual(json["ppid"] as? Int, Int(getpid()))
        XCTAssertEqual(childEnv["LISTEN_PID"], String(pid), "LISTEN_PID must equal the worker's own pid")
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

        let signals = try String(contentsOfFile: report + ".sig", encoding: .utf8)
        XCTAssertTrue(signals.contains("SigBlk:\t0000000000000000"), signals.replacingOccurrences(of: "\n", with: " | "))
        // Signals 1–31 are at their defaults. (32 and 33 are glibc's own; posix_spawn leaves them.)
        let ignored = signals.split(separator: "\n").first { $0.hasPrefix("SigIgn:") }.flatMap { UInt64($0.dropFirst(8), radix: 16) }
        XCTAssertEqual(ignored.map { $0 & 0x7fff_ffff }, 0, signals)
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
}
