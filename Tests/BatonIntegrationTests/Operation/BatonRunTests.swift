#if os(Linux)
import Foundation
import Glibc
import XCTest

/// `baton run` in external mode with the Python worker, operated with `baton reload|status|stop`.
final class BatonRunTests: IntegrationTestCase {
    /// The pid named in an outcome like "generation 3 (pid 4242, version 2) ready in 85 ms".
    private func outcomePid(_ text: String) -> pid_t? {
        guard let range = text.range(of: #"\(pid [0-9]+"#, options: .regularExpression) else { return nil }
        return pid_t(text[range].dropFirst("(pid ".count))
    }

    /// What each thread of `pid` waits in (from /proc), for a worker that does not exit.
    static func threadStates(_ pid: pid_t) -> String {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.sorted().map { task in
            let wchan = (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/wchan", encoding: .utf8)) ?? "?"
            return "\(task):\(wchan)"
        }.joined(separator: " ")
    }

    private func startPythonMaster(port: UInt16, extra: [String] = []) throws -> TestProcess {
        try start(try Locations.product("baton"),
                  ["run", "--listen", "127.0.0.1:\(port)"] + extra + ["--", try Locations.python(), Locations.pythonWorker.path])
    }

    /// 16 keep-alive clients and one connection-per-request client load the Python worker while
    /// `baton reload` upgrades it 6 times: every reload succeeds, each replaced worker drains by
    /// itself, no request fails, 7 workers answered.
    func testPythonWorkerUpgradesUnderLoadWithoutFailedRequests() throws {
        let port = try freePort()
        let master = try startPythonMaster(port: port)
        let first = try waitUntilServing(port: port, master: master)
        XCTAssertEqual(first.bodyText.contains("Hello from Python"), true, first.bodyText)

        let load = startLoad(port: port, keepAlive: 16, perRequest: 1)
        guard let firstPid = load.waitForPid(notIn: [], timeout: 30) else {
            return XCTFail("no answer under load within 30 s: \(load.stats.snapshot)")
        }
        var known: Set<pid_t> = [firstPid]
        var serving = firstPid
        for round in 1...6 {
            Thread.sleep(forTimeInterval: 0.3)  // the serving generation has keep-alive connections to drain
            let reload = try baton(["reload"])
            XCTAssertEqual(reload.exitCode, 0, "reload \(round): \(reload)")
            XCTAssertTrue(reload.output.contains("ready in"), "reload \(round): \(reload)")
            let announced = outcomePid(reload.output)
            XCTAssertNotNil(announced, "reload \(round) names no pid: \(reload)")
            guard let next = load.waitForPid(notIn: known, timeout: 20) else {
                return XCTFail("after reload \(round) no new worker answered within 20 s: \(load.stats.snapshot)")
            }
            master.track(next)
            XCTAssertEqual(next, announced, "reload \(round) announced pid \(announced ?? -1), the load saw \(next)")
            known.insert(next)
            // The replaced worker drains by itself, under load, long before the master's 30 s
            // drain timeout (at which it would be SIGKILLed with its connections).
            let replaced = serving
            XCTAssertTrue(poll(timeout: 10) { !Proc.isAlive(replaced) },
                          "reload \(round): the replaced worker \(replaced) still runs 10 s after SIGTERM (stack: \(Self.threadStates(replaced)))")
            serving = next
        }
        Thread.sleep(forTimeInterval: 0.5)
        let report = load.stop()
        XCTAssertEqual(report.failures, 0, "\(report)")
        XCTAssertEqual(report.stuckClients, 0, "\(report)")
        XCTAssertGreaterThanOrEqual(report.pids.count, 7, "\(report)")
        XCTAssertGreaterThan(report.successes, 200, "\(report)")

        // The old generations drained and were reaped: one worker is left.
        var kids: [pid_t] = []
        XCTAssertTrue(poll(timeout: 10) { kids = master.children(); return kids.count == 1 }, "master's children: \(kids)")
        master.signal(SIGTERM)
        XCTAssertEqual(master.waitForExit(timeout: 30), .exited(0))
        XCTAssertEqual(master.logCount("did not drain"), 0, "a worker had to be killed")
    }

    /// With watch.conf, a broken binary makes `baton reload` fail with the reason (and the old
    /// generation keeps serving); the repaired binary makes it succeed.
    func testReloadFailsWithReasonForBrokenBinaryAndSucceedsWhenRepaired() throws {
        let port = try freePort()
        let app = "\(directory)/app"
        XCTAssertEqual(mkdir(app, 0o755), 0)
        chmod(app, 0o755)
        let source = try String(contentsOf: Locations.pythonWorker, encoding: .utf8)
        // The shebang names this machine's python3 (the pyenv shim or /usr/bin/env may not find it).
        let worker = source.replacingOccurrences(of: "#!/usr/bin/env python3", with: "#!\(try Locations.python())")
        try write(worker, to: "\(app)/app.py", mode: 0o755)
        try write(#"{"HttpPort":"\#(port)","Ver":"1","DelaySecond":0.2,"BinName":"app.py"}"#, to: "\(app)/watch.conf", mode: 0o644)

        let check = try baton(["check", "--config", "watch.conf"], in: app)
        XCTAssertEqual(check.exitCode, 0, "\(check)")

        let master = try start(try Locations.product("baton"), ["run", "--config", "watch.conf"], in: app)
        let first = try waitUntilServing(port: port, master: master)
        let oldPid = first.pid!
        XCTAssertTrue(first.bodyText.contains(#""ver": "1""#) || first.bodyText.contains(#""ver":"1""#), first.bodyText)

        // A deploy of a broken binary (by rename, as deploys do): it exits 3 at start.
        try write("#!/bin/sh\necho 'broken build' >&2\nexit 3\n", to: "\(app)/app.py", mode: 0o755)
        let failed = try baton(["reload"], in: app)
        XCTAssertEqual(failed.exitCode, 1, "\(failed)")
        XCTAssertTrue(failed.output.contains("exited at start"), "\(failed)")
        XCTAssertTrue(failed.output.contains("exit status 3"), "\(failed)")
        for _ in 0..<5 {
            guard case .success(let answer) = httpGetOnce(port: port) else { return XCTFail("no answer after the failed reload") }
            XCTAssertEqual(answer.status, 200)
            XCTAssertEqual(answer.pid, oldPid, "the old generation must keep serving: \(answer.bodyText)")
        }
        XCTAssertEqual(master.children(), [oldPid])

        // The fixed binary goes out: reload succeeds and a new worker serves.
        try write(worker, to: "\(app)/app.py", mode: 0o755)
        let fixed = try baton(["reload"], in: app)
        XCTAssertEqual(fixed.exitCode, 0, "\(fixed)")
        XCTAssertTrue(fixed.output.contains("ready in"), "\(fixed)")
        guard let newPid = waitForNewPid(port: port, master: master, old: oldPid) else {
            return XCTFail("no new worker answered after the successful reload")
        }
        XCTAssertEqual(outcomePid(fixed.output), newPid, "\(fixed)")
        XCTAssertTrue(poll(timeout: 30) { master.children() == [newPid] }, "children: \(master.children())")
        // A reload runs the checks a deploy runs, so nothing but the reloads happened: no upgrade
        // came from watch.conf (untouched) and none from the staged copies.
        XCTAssertEqual(master.logCount("watch.conf changed"), 0, master.log)

        master.signal(SIGTERM)
        XCTAssertEqual(master.waitForExit(timeout: 30), .exited(0))
    }

    /// `status --json`, a malformed control request, the control socket's mode, and `baton stop`.
    func testStatusStopAndMalformedControlRequests() throws {
        let port = try freePort()
        let master = try startPythonMaster(port: port)
        let workerPid = try waitUntilServing(port: port, master: master).pid!

        let socketPath = "\(directory)/.baton/control.sock"
        var info = stat()
        XCTAssertEqual(lstat(socketPath, &info), 0, "no control socket at \(socketPath)")
        XCTAssertEqual(info.st_mode & S_IFMT, S_IFSOCK)
        XCTAssertEqual(info.st_mode & 0o777, 0o600, "control socket mode \(String(info.st_mode & 0o777, radix: 8))")
        XCTAssertEqual(lstat("\(directory)/.baton", &info), 0)
        XCTAssertEqual(info.st_mode & 0o077, 0, "control folder mode \(String(info.st_mode & 0o777, radix: 8))")

        func status() throws -> [String: Any] {
            let result = try baton(["status", "--json"])
            XCTAssertEqual(result.exitCode, 0, "\(result)")
            guard let object = try? JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any] else {
                XCTFail("status --json is not a JSON object: \(result.output)")
                return [:]
            }
            return object
        }
        func servingPids(_ status: [String: Any]) -> [Int] {
            ((status["generations"] as? [[String: Any]]) ?? []).compactMap { $0["pid"] as? Int }
        }

        let before = try status()
        XCTAssertEqual(before["masterPID"] as? Int, Int(master.pid), "\(before)")
        let generations = (before["generations"] as? [[String: Any]]) ?? []
        XCTAssertEqual(generations.count, 1, "\(before)")
        XCTAssertEqual(generations.first?["state"] as? String, "serving", "\(before)")
        XCTAssertEqual(generations.first?["pid"] as? Int, Int(workerPid), "\(before)")
        XCTAssertEqual(generations.first?["generation"] as? Int, 1, "\(before)")

        // Malformed requests get {"ok":false,…} and change nothing.
        for request in ["garbage\n", "{\"command\":\"explode\"}\n", "{\"command\":42}\n", "\n"] {
            let answer = try unixRoundTrip(path: socketPath, send: request)
            guard let object = try? JSONSerialization.jsonObject(with: Data(answer.utf8)) as? [String: Any] else {
                XCTFail("answer to \(request.debugDescription) is not a JSON object: \(answer.debugDescription)")
                continue
            }
            XCTAssertEqual(object["ok"] as? Bool, false, "answer to \(request.debugDescription): \(answer)")
            XCTAssertNotNil(object["message"] as? String, answer)
        }
        let after = try status()
        XCTAssertEqual(after["masterPID"] as? Int, Int(master.pid))
        XCTAssertEqual(servingPids(after), [Int(workerPid)], "\(after)")
        XCTAssertTrue(master.isRunning)
        XCTAssertEqual(master.children(), [workerPid])
        guard case .success(let answer) = httpGetOnce(port: port) else { return XCTFail("no answer after the malformed requests") }
        XCTAssertEqual(answer.pid, workerPid)

        // stop: drains, the master exits 0 and no worker is left.
        // `baton stop` waits until the master's pid is gone: reap it meanwhile, as its parent
        // (a shell, systemd) would.
        let stop = try baton(["stop"], whileWaiting: { master.reap() })
        XCTAssertEqual(stop.exitCode, 0, "\(stop)")
        XCTAssertTrue(stop.output.contains("master pid \(master.pid) stopped"), "\(stop)")
        XCTAssertEqual(master.waitForExit(timeout: 10), .exited(0))
        XCTAssertTrue(poll(timeout: 5) { !Proc.isAlive(workerPid) }, "worker \(workerPid) survived the master")
        XCTAssertTrue(Proc.all().filter { $0.pgrp == master.pid && $0.state != "Z" }.isEmpty, "processes left in the master's group")
        XCTAssertEqual(access(socketPath, F_OK), -1, "the control socket is removed at exit")

        // With no master, the commands say so and exit 2.
        let orphan = try baton(["status"])
        XCTAssertEqual(orphan.exitCode, 2, "\(orphan)")
        XCTAssertTrue(orphan.output.contains("no master answers"), "\(orphan)")
    }
}
#endif
