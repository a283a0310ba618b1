#if os(Linux)
import Foundation
import Glibc
import XCTest

/// Process-level tests: the real `hello` binary, real sockets, real signals.
final class UpgradeTests: IntegrationTestCase {

    /// ≥ 5 upgrades by SIGHUP under keep-alive and connection-per-request load: no request fails,
    /// the master keeps its pid and leaks no fd, and SIGTERM ends everything cleanly.
    func testUpgradesUnderLoadFailNoRequest() throws {
        let hello = try startHello()
        let master = hello.masterPid
        let (load, _) = try startLoadOnOneWorker(hello, keepAlive: 32, perRequest: 1, "before the first upgrade")
        let masterFDs = try XCTUnwrap(Proc.openFDCount(master), "cannot read /proc/\(master)/fd")

        let upgrades = 5
        let (report, survivors) = upgradeBySIGHUP(hello, under: load, times: upgrades)
        if let last = report.pidOrder.last { XCTAssertEqual(survivors, [last], "the newest generation should be the one left") }

        // Same master, still alive, serving through its newest worker.
        XCTAssertTrue(hello.isRunning, "master exited: \(hello.exitStatus.map { "\($0)" } ?? "")")
        XCTAssertTrue(Proc.isAlive(master))
        if let serving = hello.servingPid() {
            XCTAssertEqual(Proc.stat(serving)?.ppid, master, "serving pid \(serving) is not a child of master \(master)")
            // Staging runs on a thread at a lower priority (LaunchThread); workers must not inherit it.
            XCTAssertEqual(Proc.stat(serving)?.nice, Proc.stat(master)?.nice, "worker \(serving) runs at another priority than its master")
        } else {
            XCTFail("no answer after the load stopped")
        }

        // No fd leaked by the master across the upgrades.
        var fds: Int? = nil
        let fdsBack = poll(timeout: 10, interval: 0.1) {
            fds = Proc.openFDCount(master)
            return fds == masterFDs
        }
        XCTAssertTrue(fdsBack, "master fd count \(fds.map(String.init) ?? "?") after \(upgrades) upgrades, \(masterFDs) before")

        // SIGTERM: every generation drains, master exits 0, no worker is left.
        assertStopsCleanly(hello, timeout: 40, workers: report.pids)

        // The master told each draining generation whose queue its successor serves; only the
        // last one, at the stop, was the port's last user and took what was queued.
        let drains = hello.logLines(containing: "draining").joined(separator: "\n")
        XCTAssertEqual(hello.logCount("left to the generation that shares it"), upgrades, drains)
        XCTAssertEqual(hello.logCount("taken (last user)"), 1, drains)
    }

    /// SIGTERM under load: requests in flight are answered, and a client that comes during the
    /// drain is refused (ECONNREFUSED), never accepted by the kernel into a queue that nobody will
    /// take from and reset when the master exits (a client cannot tell that from a crash). The
    /// master closes its listeners, and its keeper's copies, before the last generation takes
    /// its queue; it says so in the log, which the load's clients wait for to count a refusal
    /// as the end of the port (see `LoadRunner.portClosed`).
    func testAStopUnderLoadRefusesLateClientsInsteadOfResettingThem() throws {
        let hello = try startHello()
        let logURL = hello.logURL
        let closedLine = "stopping: closed listener(s)"
        let load = startLoad(port: hello.port, keepAlive: 8, perRequest: 4, portClosed: {
            ((try? String(contentsOf: logURL, encoding: .utf8)) ?? "").contains(closedLine)
        })
        let worker = try firstPid(load)
        waitForChildren(hello, toBe: [worker], timeout: 10, "before the stop")
        Thread.sleep(forTimeInterval: 0.3)
        assertStopsCleanly(hello, timeout: 30, workers: [worker])
        // Every client ends on the refusal, or is stopped now.
        poll(timeout: 5) { load.stats.snapshot.endedByRefusal == 12 }
        let report = load.stop()
        print("load around the stop: \(report)")
        XCTAssertEqual(report.failures, 0, "failed requests around the stop: \(report)")
        XCTAssertEqual(report.stuckClients, 0, "\(report)")
        XCTAssertEqual(report.endedByRefusal, 12, "every client should end on a refused connect: \(report)")
        XCTAssertEqual(hello.logCount("taken (last user)"), 1, "the last generation serves what was queued")
    }

    /// A successor that exits at once: the upgrade fails, the old generation keeps serving without
    /// a failed request, and the next good upgrade works.
    func testSuccessorThatExitsAtStartKeepsOldGeneration() throws {
        let hello = try startHello()
        let (load, old) = try startLoadOnOneWorker(hello, keepAlive: 8, perRequest: 1, "before the upgrade")

        try hello.replaceBinary(withScript: "#!/bin/sh\nexit 3\n")
        let failedBefore = hello.logCount("upgrade failed")
        hello.signal(SIGHUP)
        XCTAssertTrue(hello.waitForLog("upgrade failed", moreThan: failedBefore, timeout: 40),
                      "no `upgrade failed` in the log within 40 s")
        try checkOldGenerationServes(hello, load, old)

        try upgradeBackToRealBinary(hello, load, from: old)
    }

    /// A successor that never reports ready: it is killed after --ready-timeout, the old
    /// generation keeps serving, and the next good upgrade works.
    func testSuccessorThatNeverBecomesReadyIsKilled() throws {
        let hello = try startHello(["--ready-timeout", "2"])
        let (load, old) = try startLoadOnOneWorker(hello, keepAlive: 8, perRequest: 1, "before the upgrade")

        try hello.replaceBinary(withScript: "#!/bin/sh\nexec sleep 600\n")
        let failedBefore = hello.logCount("upgrade failed")
        hello.signal(SIGHUP)
        // Catch the successor's pid while it is alive.
        var successor: pid_t? = nil
        poll(timeout: 20, interval: 0.02) {
            successor = hello.children().first { $0 != old }
            return successor != nil
        }
        XCTAssertNotNil(successor, "no successor process appeared after SIGHUP")
        XCTAssertTrue(hello.waitForLog("upgrade failed", moreThan: failedBefore, timeout: 40),
                      "no `upgrade failed` in the log within 40 s")
        if let successor {
            hello.track(successor)
            // Killed and reaped: not even a zombie child of the master.
            let gone = poll(timeout: 10) {
                !hello.childrenIncludingZombies().contains(successor) && !Proc.isAlive(successor)
            }
            XCTAssertTrue(gone, "successor \(successor) (\(Proc.commandLine(successor) ?? "?"), state \(Proc.stat(successor).map { String($0.state) } ?? "gone")) is still around after `upgrade failed`")
        }
        try checkOldGenerationServes(hello, load, old)

        try upgradeBackToRealBinary(hello, load, from: old)
    }

    /// With no successor timeout, a worker does not outlive its master at all.
    func testMasterKilledTakesWorkersDownWithoutASuccessorTimeout() throws {
        let hello = try startHello(["--successor-timeout", "0"])
        let worker = try XCTUnwrap(hello.servingPid(), "no answer from hello")
        hello.track(worker)
        XCTAssertEqual(Proc.stat(worker)?.ppid, hello.masterPid, "worker \(worker) is not a child of the master")
        XCTAssertFalse(hello.log.contains("keeper pid"), "a keeper runs although the successor timeout is 0")
        hello.signal(SIGKILL)
        XCTAssertEqual(hello.waitForExit(timeout: 10), .signaled(SIGKILL))
        let gone = poll(timeout: 10) { !Proc.isAlive(worker) }
        XCTAssertTrue(gone, "worker \(worker) still alive 10 s after its master was SIGKILLed (\(Proc.commandLine(worker) ?? "?"))")
    }

    // MARK: Shared steps

    /// After a failed upgrade: `old` is the only child, answers fresh requests, and the load saw
    /// only `old` and no failure.
    private func checkOldGenerationServes(_ hello: HelloProcess, _ load: LoadRunner, _ old: pid_t,
                                          file: StaticString = #filePath, line: UInt = #line) throws {
        waitForChildren(hello, toBe: [old], timeout: 10, "after the failed upgrade", file: file, line: line)
        XCTAssertTrue(hello.isRunning, "master exited", file: file, line: line)
        for _ in 0..<5 {
            switch hello.get() {
            case .success(let response):
                XCTAssertEqual(response.status, 200, file: file, line: line)
                XCTAssertEqual(response.pid, old, "a fresh request was answered by another pid", file: file, line: line)
            case .failure(let error):
                XCTFail("fresh request after the failed upgrade: \(error)", file: file, line: line)
            }
        }
        let report = load.stats.snapshot
        XCTAssertEqual(report.failures, 0, "failed requests around the failed upgrade: \(report)", file: file, line: line)
        XCTAssertEqual(report.pids, [old], "only the old generation should have answered: \(report)", file: file, line: line)
    }

    /// Puts the real binary back, upgrades to it under the running load and checks that it took
    /// over with zero failed requests; then stops the master.
    private func upgradeBackToRealBinary(_ hello: HelloProcess, _ load: LoadRunner, from old: pid_t,
                                         file: StaticString = #filePath, line: UInt = #line) throws {
        try hello.restoreBinary()
        hello.signal(SIGHUP)
        guard let new = load.waitForPid(notIn: [old], timeout: 40) else {
            XCTFail("no new worker after restoring the binary: \(load.stats.snapshot)", file: file, line: line)
            return
        }
        hello.track(new)
        waitForChildren(hello, toBe: [new], timeout: 45, "after the good upgrade", file: file, line: line)
        let report = load.stop()
        XCTAssertEqual(report.failures, 0, "failed requests: \(report)", file: file, line: line)
        XCTAssertEqual(report.stuckClients, 0, "\(report)", file: file, line: line)
        XCTAssertEqual(report.pids, [old, new], "\(report)", file: file, line: line)
        XCTAssertEqual(hello.servingPid(), new, file: file, line: line)
        assertStopsCleanly(hello, timeout: 40, file: file, line: line)
    }
}
#endif
