#if os(Linux)
import Foundation
import Glibc
import XCTest

/// The master re-executes its own binary in place (SIGUSR2, `baton reload --master`): same pid,
/// listeners never closed, the generation table carried over, then a worker upgrade.
final class MasterReexecTests: IntegrationTestCase {

    /// Under keep-alive and connection-per-request load: a new binary renamed over the old one,
    /// SIGUSR2, and the master runs the new file with its pid unchanged, a new generation serves,
    /// no request fails, the fd count comes back, and a later SIGHUP still upgrades.
    func testSIGUSR2ReexecutesTheNewBinaryInPlaceUnderLoad() throws {
        let hello = try startHello()
        let master = hello.masterPid
        let (load, first) = try startLoadOnOneWorker(hello, keepAlive: 24, perRequest: 1, "before the re-execution")
        let baselineFDs = try XCTUnwrap(Proc.openFDCount(master))

        try hello.restoreBinary()  // a new file (new inode) at the master's path
        XCTAssertTrue(Self.exeIsDeleted(master), "the running image's file should be gone after the rename")
        hello.signal(SIGUSR2)
        let newPid = try XCTUnwrap(load.waitForPid(notIn: [first], timeout: 30), "no new worker after SIGUSR2; \(load.stats.snapshot)")
        hello.track(newPid)
        XCTAssertTrue(hello.isRunning, "the master exited")
        XCTAssertEqual(Proc.stat(newPid)?.ppid, master, "the new worker is not the master's child")
        XCTAssertEqual(Self.inode(of: "/proc/\(master)/exe"), Self.inode(of: hello.executable.path), "/proc/\(master)/exe is not the new file")
        XCTAssertFalse(Self.exeIsDeleted(master))
        XCTAssertTrue(hello.log.contains("master re-executed in place: pid \(master)"), hello.logExcerpt())
        waitForChildren(hello, toBe: [newPid], timeout: 30, "after the re-execution")
        var fds: Int?
        XCTAssertTrue(poll(timeout: 10, interval: 0.1) { fds = Proc.openFDCount(master); return fds == baselineFDs },
                      "master fds \(fds.map(String.init) ?? "?") after the re-execution, \(baselineFDs) before")

        // The new image handles the ordinary upgrade signal.
        hello.signal(SIGHUP)
        let afterHUP = try XCTUnwrap(load.waitForPid(notIn: [first, newPid], timeout: 30), "SIGHUP after the re-execution did nothing")
        hello.track(afterHUP)
        waitForChildren(hello, toBe: [afterHUP], timeout: 30, "after the SIGHUP")
        let report = load.stop()
        hello.track(report.pids)
        XCTAssertEqual(report.failures, 0, "\(report)")
        XCTAssertGreaterThan(report.successes, 0)
        XCTAssertEqual(hello.stop(), .exited(0), "the re-executed master should drain and exit on SIGTERM")
    }

    /// A binary that fails the check (exits at once, or never answers) leaves the old image
    /// running and says why, through SIGUSR2 and through `baton reload --master`; repaired, the
    /// same command re-executes and reports the upgrade that followed.
    func testBinaryFailingTheCheckLeavesTheOldImageServing() throws {
        let hello = try startHello()
        let master = hello.masterPid
        let worker = try XCTUnwrap(hello.servingPid())
        let control = hello.directory.appendingPathComponent(".baton/control.sock").path

        try hello.replaceBinary(withScript: "#!/bin/sh\necho 'this release is broken' >&2\nexit 3\n")
        hello.signal(SIGUSR2)
        XCTAssertTrue(poll(timeout: 15) { hello.log.contains("master re-execution refused") }, hello.logExcerpt())
        XCTAssertTrue(hello.log.contains("did not pass the check (exit status 3"), hello.logExcerpt())
        let reload = try runCommand(try Locations.product("baton"), ["reload", "--master", "--control", control],
                                    directory: hello.directory.path)
        XCTAssertEqual(reload.exitCode, 1, "\(reload)")
        XCTAssertTrue(reload.output.contains("master re-execution refused"), "\(reload)")
        XCTAssertTrue(hello.isRunning)
        XCTAssertTrue(Self.exeIsDeleted(master), "the old image should still run")
        XCTAssertEqual(hello.servingPid(), worker, "the old worker should still serve")
        XCTAssertEqual(hello.children(), [worker])

        try hello.restoreBinary()
        let repaired = try runCommand(try Locations.product("baton"), ["reload", "--master", "--control", control],
                                      directory: hello.directory.path)
        XCTAssertEqual(repaired.exitCode, 0, "\(repaired)")
        XCTAssertTrue(repaired.output.contains("execution 1"), "\(repaired)")
        XCTAssertTrue(repaired.output.contains("ready in"), "\(repaired)")
        XCTAssertFalse(Self.exeIsDeleted(master))
        let serving = try XCTUnwrap(hello.servingPid())
        XCTAssertNotEqual(serving, worker)
        hello.track(serving)
    }

    /// 20 re-executions in a row under load: no failed request, no fd growth, and `baton status`
    /// keeps the history (generation numbers continue, the process's uptime outlives the image).
    func testTwentyReexecutionsInARowUnderLoad() throws {
        let hello = try startHello()
        let master = hello.masterPid
        let (load, first) = try startLoadOnOneWorker(hello, keepAlive: 16, perRequest: 1, "before the re-executions")
        let baselineFDs = try XCTUnwrap(Proc.openFDCount(master))
        var known: Set<pid_t> = [first]
        let rounds = 20
        for round in 1...rounds {
            try hello.restoreBinary()
            hello.signal(SIGUSR2)
            guard let next = load.waitForPid(notIn: known, timeout: 30) else {
                XCTFail("round \(round): no new worker; \(load.stats.snapshot)")
                break
            }
            known.insert(next)
            hello.track(next)
            waitForChildren(hello, toBe: [next], timeout: 30, "round \(round)")
        }
        let report = load.stop()
        hello.track(report.pids)
        print("load during \(rounds) master re-executions: \(report)")
        XCTAssertEqual(report.failures, 0, "\(report)")
        XCTAssertTrue(hello.isRunning)
        var fds: Int?
        XCTAssertTrue(poll(timeout: 10, interval: 0.1) { fds = Proc.openFDCount(master); return fds == baselineFDs },
                      "master fds \(fds.map(String.init) ?? "?") after \(rounds) re-executions, \(baselineFDs) before")

        let control = hello.directory.appendingPathComponent(".baton/control.sock").path
        let status = try runCommand(try Locations.product("baton"), ["status", "--json", "--control", control],
                                    directory: hello.directory.path)
        XCTAssertEqual(status.exitCode, 0, "\(status)")
        struct Status: Decodable {
            struct Image: Decodable { var executions: Int; var ageSeconds: Double }
            struct Generation: Decodable { var generation: Int }
            var masterPID: Int32; var uptimeSeconds: Double; var image: Image; var generations: [Generation]
        }
        let json = String(status.output[status.output.firstIndex(of: "{")!...])
        let parsed = try JSONDecoder().decode(Status.self, from: Data(json.utf8))
        XCTAssertEqual(parsed.masterPID, master)
        XCTAssertEqual(parsed.image.executions, rounds)
        XCTAssertEqual(parsed.generations.map(\.generation), [rounds + 1], "generation numbers should continue across images")
        XCTAssertGreaterThan(parsed.uptimeSeconds, parsed.image.ageSeconds + 1, "uptime should count from the process's start")
    }

    /// By default an upgrade leaves the master's image alone and says that its binary changed;
    /// with `--reexec-master-on-upgrade`, SIGHUP re-executes the master first.
    func testOrdinaryUpgradeReexecutesTheMasterOnlyWhenAskedTo() throws {
        let plain = try startHello()
        try plain.restoreBinary()
        plain.signal(SIGHUP)
        XCTAssertTrue(poll(timeout: 30) { plain.log.contains("changed on disk since it started") }, plain.logExcerpt())
        XCTAssertTrue(Self.exeIsDeleted(plain.masterPid), "the master re-executed without being asked to")
        XCTAssertFalse(plain.log.contains("master re-executed in place"))

        let eager = try startHello(["--reexec-master-on-upgrade"])
        try eager.restoreBinary()
        eager.signal(SIGHUP)
        XCTAssertTrue(poll(timeout: 30) { eager.log.contains("master re-executed in place: pid \(eager.masterPid)") }, eager.logExcerpt())
        XCTAssertTrue(poll(timeout: 30) { eager.log.contains("generation 2") && eager.log.contains("ready in") }, eager.logExcerpt())
        XCTAssertFalse(Self.exeIsDeleted(eager.masterPid))
        if let serving = eager.servingPid() { eager.track(serving) }
    }

    /// The deploy workflow goes on after a re-execution: the new image watches watch.conf again
    /// (a fresh inotify watch) and a Ver bump upgrades, with the release history kept.
    func testWatchConfStillTriggersUpgradesAfterAReexecution() throws {
        let hello = try startHello(mode: .watchConf(ver: "1", delaySecond: 0.3, passConfig: false))
        let first = try XCTUnwrap(hello.servingPid())
        hello.signal(SIGUSR2)
        XCTAssertTrue(poll(timeout: 30) { hello.log.contains("master re-executed in place") }, hello.logExcerpt())
        var afterExec: pid_t?
        XCTAssertTrue(poll(timeout: 30) { afterExec = hello.servingPid(); return afterExec != nil && afterExec != first }, hello.logExcerpt())
        XCTAssertTrue(poll(timeout: 10) { hello.logCount("watching") >= 2 }, "the new image does not watch watch.conf\n\(hello.logExcerpt())")
        try hello.writeConfig(HelloProcess.watchConf(port: hello.port, ver: "2", delaySecond: 0.3))
        var answer: HTTPResponse?
        XCTAssertTrue(poll(timeout: 30) {
            if case .success(let response) = hello.get(), response.bodyText.contains(#""ver":"2""#) { answer = response; return true }
            return false
        }, "Ver 2 never served after the re-execution\n\(hello.logExcerpt())")
        if let pid = answer?.pid { hello.track(pid) }
        XCTAssertEqual(hello.logLines(containing: "upgrade (hello.watch.conf changed): version 1 → 2").count, 1, hello.logExcerpt())
    }

    /// A SIGHUP or SIGUSR2 that lands while the new image starts (its handlers not installed yet)
    /// must not end the master, as the default action of both would.
    func testSignalsDuringTheExecDoNotKillTheMaster() throws {
        let hello = try startHello()
        for round in 1...4 {
            try hello.restoreBinary()
            hello.signal(SIGUSR2)
            guard poll(timeout: 30, interval: 0.001, { hello.logCount("re-executing the master in place") >= round }) else {
                return XCTFail("round \(round): no re-execution\n\(hello.logExcerpt())")
            }
            hello.signal(round % 2 == 0 ? SIGUSR2 : SIGHUP)
            XCTAssertTrue(poll(timeout: 30) { hello.logCount("master re-executed in place") >= round }, "round \(round)\n\(hello.logExcerpt())")
            Thread.sleep(forTimeInterval: 0.3)
            XCTAssertTrue(hello.isRunning, "round \(round): the master died: \(hello.exitStatus.map { "\($0)" } ?? "")")
            guard hello.isRunning else { return }
        }
        let serving = try XCTUnwrap(hello.servingPid())
        hello.track(serving)
        XCTAssertEqual(Proc.stat(serving)?.ppid, hello.masterPid)
    }

    static func inode(of path: String) -> UInt64? {
        var info = stat()
        return stat(path, &info) == 0 ? UInt64(info.st_ino) : nil
    }

    static func exeIsDeleted(_ pid: pid_t) -> Bool {
        ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")) ?? "").hasSuffix(" (deleted)")
    }
}
#endif
