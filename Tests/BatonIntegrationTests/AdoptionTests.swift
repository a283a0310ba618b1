#if os(Linux)
import BatonTestSupport
import Foundation
import Glibc
import XCTest

/// A master killed outright (SIGKILL) loses nothing: its keeper holds the listeners and the
/// workers' channels, the workers keep serving, and the same command started again adopts them.
final class AdoptionTests: IntegrationTestCase {
    /// Three times: SIGKILL the master under load, start the same command again in the same
    /// folder; it adopts the worker. Not one request fails, no keep-alive connection is closed,
    /// the same worker answers throughout; then an upgrade, driven by the last master, works.
    func testKilledMasterIsAdoptedByTheSameCommandAndNothingIsLost() throws {
        let hello = try startHello()
        let (load, worker) = try startLoadOnOneWorker(hello, keepAlive: 16, perRequest: 2, "before the first kill")
        var master: TestProcess = hello
        for round in 1...3 {
            let dead = master.pid
            master.signal(SIGKILL)
            XCTAssertEqual(master.waitForExit(timeout: 10), .signaled(SIGKILL))
            Thread.sleep(forTimeInterval: 0.3)  // served by the orphaned worker meanwhile
            master = try start(hello.executable.path, hello.arguments, in: hello.directory.path, logName: "master-\(round).log")
            let adopted = "adopted 1 generation(s) from master pid \(dead)"
            XCTAssertTrue(master.waitForLog(adopted, timeout: 10), "round \(round): no `\(adopted)`")
            XCTAssertTrue(master.log.contains("adoption \(round) of this service"), "round \(round): the adoption count is not \(round)")
            XCTAssertEqual(hello.servingPid(), worker, "round \(round): another process answers")
        }
        let status = try baton(["status"], in: hello.directory.path)
        XCTAssertTrue(status.output.contains("adoptions: 3"), status.description)
        let metrics = try baton(["metrics"], in: hello.directory.path)
        XCTAssertTrue(metrics.output.contains("baton_adoptions_total 3"), metrics.description)

        // The adopted worker is upgraded by the master that adopted it.
        guard let new = try upgradeAfterAdoptions(master: master.pid, from: worker, load: load, tracking: master) else { return }

        XCTAssertEqual(master.stop(timeout: 30), .exited(0))
        let adoptSocket = hello.directory.appendingPathComponent(".baton/control.adopt.sock").path
        XCTAssertFalse(FileManager.default.fileExists(atPath: adoptSocket), "the keeper's socket outlived a clean stop")
        XCTAssertTrue(poll(timeout: 10) { !Proc.isAlive(new) }, "worker \(new) outlived a clean stop")
    }

    /// `--respawn-master`, and no supervisor: each time the master is SIGKILLed its keeper starts
    /// the same command again at once, and the new master adopts the worker. Nothing fails, no
    /// keep-alive connection closes; then the third such master upgrades, and `baton stop` stops
    /// everything, with no master started again.
    func testWithRespawnMasterTheKeeperStartsTheMasterAgainAndNothingIsLost() throws {
        let hello = try startHello(["--respawn-master"])
        XCTAssertTrue(hello.log.contains("its keeper starts \(hello.executable.path) again"), hello.log)
        let (load, worker) = try startLoadOnOneWorker(hello, keepAlive: 16, perRequest: 2, "before the first kill")
        let started = "started the master's command again: pid "
        var master = hello.pid
        for round in 1...3 {
            XCTAssertEqual(kill(master, SIGKILL), 0)
            if round == 1 { XCTAssertEqual(hello.waitForExit(timeout: 10), .signaled(SIGKILL)) }
            XCTAssertTrue(poll(timeout: 10) { hello.logCount(started) == round }, "round \(round): the keeper did not start the master again:\n\(hello.log)")
            let line = try XCTUnwrap(hello.logLines(containing: started).last)
            let new = try XCTUnwrap(line.components(separatedBy: started).last.flatMap { pid_t($0) }, line)
            hello.track(new)
            XCTAssertTrue(hello.waitForLog("adopted 1 generation(s) from master pid \(master)", timeout: 10), "round \(round): no adoption:\n\(hello.log)")
            XCTAssertTrue(hello.log.contains("started again by the keeper after master pid \(master) died"), hello.log)
            XCTAssertEqual(hello.servingPid(), worker, "round \(round): another process answers")
            master = new
        }
        let status = try baton(["status"], in: hello.directory.path)
        XCTAssertTrue(status.output.contains("master pid \(master)") && status.output.contains("adoptions: 3"), status.description)

        guard let upgraded = try upgradeAfterAdoptions(master: master, from: worker, load: load, tracking: hello) else { return }

        let stop = try baton(["stop"], in: hello.directory.path)
        XCTAssertTrue(stop.output.contains("master pid \(master) stopped"), stop.description)
        XCTAssertTrue(poll(timeout: 10) { !Proc.isAlive(upgraded) }, "worker \(upgraded) outlived a clean stop")
        let adoptSocket = hello.directory.appendingPathComponent(".baton/control.adopt.sock").path
        XCTAssertFalse(FileManager.default.fileExists(atPath: adoptSocket), "the keeper's socket outlived a clean stop")
        Thread.sleep(forTimeInterval: 0.5)
        XCTAssertEqual(hello.logCount(started), 3, "a master was started again after a clean stop:\n\(hello.log)")
    }

    /// SIGHUP to the last adopting `master`: the adopted `worker` is replaced and drains, with no
    /// request failed and every one of the 16 keep-alive connections kept (handed over, none closed
    /// by a kill). Returns the new worker, or nil after a failure is recorded.
    private func upgradeAfterAdoptions(master: pid_t, from worker: pid_t, load: LoadRunner, tracking owner: TestProcess,
                                       file: StaticString = #filePath, line: UInt = #line) throws -> pid_t? {
        XCTAssertEqual(kill(master, SIGHUP), 0, file: file, line: line)
        guard let new = load.waitForPid(notIn: [worker], timeout: 20) else {
            XCTFail("no upgrade by master \(master) after the adoptions: \(load.stats.snapshot)\n\(owner.log)", file: file, line: line)
            return nil
        }
        owner.track(new)
        XCTAssertTrue(poll(timeout: 20) { !Proc.isAlive(worker) }, "the adopted worker \(worker) did not drain and exit", file: file, line: line)
        let report = load.stop()
        XCTAssertEqual(report.failures, 0, "\(report)", file: file, line: line)
        XCTAssertEqual(report.pidOrder, [worker, new], "\(report)", file: file, line: line)
        XCTAssertEqual(report.keepAliveConnects, 16, "keep-alive connections were closed: \(report)", file: file, line: line)
        return new
    }

    /// A deploy made while no master ran is not lost: watch.conf edited between the kill and the
    /// next start makes the adopting master upgrade to it. An adoption with watch.conf untouched
    /// upgrades nothing.
    func testAWatchConfChangedWhileNoMasterRanIsDeployedByTheAdoptingMaster() throws {
        let hello = try startHello(mode: .watchConf(ver: "1", delaySecond: 0.3, passConfig: false))
        let worker = try answer(hello).pid
        hello.track(worker)

        hello.signal(SIGKILL)
        XCTAssertEqual(hello.waitForExit(timeout: 10), .signaled(SIGKILL))
        let quiet = try start(hello.executable.path, hello.arguments, in: hello.directory.path, logName: "master-1.log")
        XCTAssertTrue(quiet.waitForLog("adoption 1 of this service", timeout: 10), quiet.log)
        Thread.sleep(forTimeInterval: 1)  // more than DelaySecond: an upgrade would have started
        XCTAssertFalse(quiet.log.contains("changed while no master"), quiet.log)
        let unchanged = try answer(hello)
        XCTAssertEqual(unchanged.ver, "1", "an untouched watch.conf upgraded")
        XCTAssertEqual(unchanged.pid, worker, "an untouched watch.conf upgraded")

        quiet.signal(SIGKILL)
        XCTAssertEqual(quiet.waitForExit(timeout: 10), .signaled(SIGKILL))
        try hello.writeConfig(HelloProcess.watchConf(port: hello.port, ver: "2", delaySecond: 0.3))
        let master = try start(hello.executable.path, hello.arguments, in: hello.directory.path, logName: "master-2.log")
        XCTAssertTrue(master.waitForLog("changed while no master watched it", timeout: 10), master.log)
        XCTAssertTrue(poll(timeout: 20) { (try? self.answer(hello))?.ver == "2" }, "version 2 never served:\n\(master.log)")
        let upgraded = try answer(hello)
        XCTAssertNotEqual(upgraded.pid, worker)
        master.track(upgraded.pid)
        XCTAssertTrue(poll(timeout: 20) { !Proc.isAlive(worker) }, "the adopted worker \(worker) did not drain after the upgrade")
        XCTAssertEqual(master.stop(timeout: 30), .exited(0))
    }

    /// No successor comes: the workers serve for the successor timeout, then drain and exit, and
    /// so does the keeper. No orphan serves an old version forever.
    func testWithoutASuccessorTheWorkersDrainAfterTheTimeout() throws {
        let hello = try startHello(["--successor-timeout", "1.5"])
        let worker = try XCTUnwrap(hello.servingPid(), "no answer from hello")
        hello.track(worker)
        XCTAssertEqual(hello.children(), [worker])
        let line = try XCTUnwrap(hello.logLines(containing: "keeper pid ").first, "no keeper in the log")
        let keeper = try XCTUnwrap(line.components(separatedBy: "keeper pid ").last?.split(separator: " ").first.flatMap { pid_t($0) })
        XCTAssertTrue(Proc.isAlive(keeper), "keeper \(keeper) is not running")
        hello.signal(SIGKILL)
        XCTAssertEqual(hello.waitForExit(timeout: 10), .signaled(SIGKILL))
        let killedAt = Date()
        Thread.sleep(forTimeInterval: 0.5)
        XCTAssertEqual(hello.servingPid(), worker, "the worker did not serve on without its master")
        XCTAssertTrue(poll(timeout: 10) { !Proc.isAlive(worker) && !Proc.isAlive(keeper) },
                      "worker \(worker) or keeper \(keeper) still alive 10 s after the kill")
        XCTAssertGreaterThan(Date().timeIntervalSince(killedAt), 1.2, "the worker did not wait for a successor")
        XCTAssertTrue(hello.log.contains("no successor came"), "the keeper did not say why it let go")
    }

    /// A master SIGKILLed in the middle of its stop (SIGTERM, with a slow request still on its
    /// worker): the same command started again adopts the draining worker and finishes the stop
    /// instead of starting the release again. The request is answered; the new master exits 0
    /// once the worker has, and its keeper with it; the port stays closed.
    func testAMasterKilledWhileStoppingIsFollowedByOneThatFinishesTheStop() throws {
        let hello = try startHello()
        let worker = try XCTUnwrap(hello.servingPid(), "no answer from hello")
        hello.track(worker)
        let port = hello.port
        let long = LongRequest()
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            long.result = httpGetOnce(port: port, path: "/sleep?ms=3000", timeout: 20)
            done.signal()
        }
        Thread.sleep(forTimeInterval: 0.5)  // on the worker by now
        hello.signal(SIGTERM)
        XCTAssertTrue(hello.waitForLog("worker generation 1 draining", timeout: 10), "the worker did not start its drain")
        Thread.sleep(forTimeInterval: 0.2)  // the master's record (stopping) reaches its keeper in the same step as the drain orders
        let dead = hello.pid
        hello.signal(SIGKILL)
        XCTAssertEqual(hello.waitForExit(timeout: 10), .signaled(SIGKILL))

        let master = try start(hello.executable.path, hello.arguments, in: hello.directory.path, logName: "master-2.log")
        let finishing = "master pid \(dead) died while stopping: finishing the stop"
        XCTAssertTrue(master.waitForLog(finishing, timeout: 10), "no `\(finishing)`")
        XCTAssertEqual(done.wait(timeout: .now() + 20), .success, "the slow request did not end within 20 s")
        if case .success(let response) = long.result {
            XCTAssertEqual(response.status, 200)
            XCTAssertEqual(response.pid, worker, "answered by the worker that had it")
        } else {
            XCTFail("the slow request failed: \(String(describing: long.result))")
        }
        XCTAssertEqual(master.waitForExit(timeout: 20), .exited(0), "the new master did not finish the stop")
        XCTAssertTrue(master.log.contains("master stopped: every generation has exited"), master.log)
        XCTAssertFalse(master.log.contains("starting (restart)") || master.log.contains("no generation is serving"), master.log)
        XCTAssertTrue(poll(timeout: 10) { !Proc.isAlive(worker) }, "worker \(worker) outlived the stop")
        let adoptSocket = hello.directory.appendingPathComponent(".baton/control.adopt.sock").path
        XCTAssertFalse(FileManager.default.fileExists(atPath: adoptSocket), "the keeper outlived the stop")
        if case .failure(.connect(let e)) = httpGetOnce(port: port, timeout: 2) {
            XCTAssertEqual(e, ECONNREFUSED)
        } else {
            XCTFail("port \(port) still accepts after the stop")
        }
    }

    /// A second master started in the same folder while the first lives is refused, clearly,
    /// and changes nothing.
    func testASecondMasterIsRefusedWhileTheFirstLives() throws {
        let hello = try startHello()
        let worker = try XCTUnwrap(hello.servingPid())
        let second = try start(hello.executable.path, hello.arguments, in: hello.directory.path, logName: "second.log")
        XCTAssertEqual(second.waitForExit(timeout: 10).map { $0 != .exited(0) }, true, "the second master did not fail")
        XCTAssertTrue(second.log.contains("another master (pid \(hello.masterPid)) runs here"), second.log)
        XCTAssertEqual(hello.servingPid(), worker)
        XCTAssertEqual(hello.stop(timeout: 30), .exited(0))
    }
}
#endif
