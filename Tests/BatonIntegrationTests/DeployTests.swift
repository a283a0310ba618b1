#if os(Linux)
import Foundation
import Glibc
import XCTest

/// "Deploy by file": the seed workflow with the real `hello` binary, its `hello.watch.conf` and
/// real inotify events, under load.
final class DeployTests: IntegrationTestCase {

    /// The seed flow end to end: a new binary arrives by rename, `Ver` is bumped, and `/hello`
    /// answers the new version from a new pid with zero failed requests; the old release stays on
    /// disk for a rollback.
    func testSeedFlowNewBinaryByRenameAndVerBump() throws {
        // As a deploy runs it: `./hello` in its folder, which holds hello.watch.conf.
        let hello = try startHello(mode: .watchConf(ver: "1", delaySecond: 0.3, passConfig: false))
        let load = startLoad(hello, keepAlive: 8, perRequest: 1)
        let old = try firstPid(load)
        XCTAssertEqual(try answer(hello).ver, "1")
        let firstReleases = hello.releases()
        XCTAssertEqual(firstReleases.count, 1, "releases after start: \(firstReleases)")

        // Upload: copy to a temporary name, rename over BinName (a different file: 16 bytes
        // after the ELF's end change its SHA-256, not its behaviour). Then bump Ver.
        try hello.installHello(as: "hello", trailer: "baton-test-v2-\(UUID().uuidString.prefix(2))")
        try hello.writeConfig(HelloProcess.watchConf(port: hello.port, ver: "2", delaySecond: 0.3))

        guard let new = load.waitForPid(notIn: [old], timeout: 30) else {
            return XCTFail("no new worker answered within 30 s of the deploy: \(load.stats.snapshot)")
        }
        hello.track(new)
        let fresh = try answer(hello)
        XCTAssertEqual(fresh.ver, "2")
        XCTAssertEqual(fresh.pid, new)
        waitForChildren(hello, toBe: [new], timeout: 30, "after the deploy")
        let report = load.stop()
        XCTAssertEqual(report.failures, 0, "failed requests during the deploy: \(report)")
        XCTAssertEqual(report.stuckClients, 0, "\(report)")
        XCTAssertEqual(report.pidOrder, [old, new], "\(report)")

        XCTAssertEqual(hello.logCount("starting ("), 2, "one start and one upgrade")
        XCTAssertEqual(hello.logLines(containing: "upgrade (hello.watch.conf changed): version 1 → 2").count, 1)
        let releases = hello.releases()
        XCTAssertEqual(releases.count, 2, "releases: \(releases)")
        XCTAssertTrue(releases.contains(firstReleases[0]), "the old release \(firstReleases[0]) is gone: \(releases)")
        XCTAssertTrue(releases.contains { $0.hasPrefix("2-") }, "no staged release for Ver 2: \(releases)")
        XCTAssertNotEqual(firstReleases.first.map { String($0.dropFirst(2)) }, releases.first { $0.hasPrefix("2-") }.map { String($0.dropFirst(2)) },
                          "the new binary should have a different SHA-256 prefix")
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: hello.releasesURL.appendingPathComponent("\(firstReleases[0])/hello").path),
                      "the old release's binary is not on disk any more")

        assertStopsCleanly(hello, timeout: 30)
    }

    /// Every way a deploy changes watch.conf makes exactly one upgrade; 100 writes within a second
    /// make one too.
    func testEachWayOfChangingTheFileMakesExactlyOneUpgrade() throws {
        let delay = 0.3
        let hello = try startHello(mode: .watchConf(ver: "1", delaySecond: delay, passConfig: true))
        let load = startLoad(hello, keepAlive: 2, perRequest: 1)
        _ = try firstPid(load)
        var ver = 1

        func expectOneUpgrade(_ what: String, expectedVer: String? = nil, _ change: () throws -> Void,
                              file: StaticString = #filePath, line: UInt = #line) throws {
            let startsBefore = hello.logCount("starting (")
            let readyBefore = hello.logCount(") ready in ")
            let known = load.stats.snapshot.pids
            try change()
            let started = hello.waitForLog(") ready in ", moreThan: readyBefore, timeout: 20)
            XCTAssertTrue(started, "\(what): no generation became ready within 20 s", file: file, line: line)
            guard started else { return }
            // Long enough for any second upgrade to have started: the quiet period and then some.
            Thread.sleep(forTimeInterval: delay + 0.7)
            XCTAssertEqual(hello.logCount("starting (") - startsBefore, 1, "\(what): generations started", file: file, line: line)
            guard let new = load.waitForPid(notIn: known, timeout: 10) else {
                return XCTFail("\(what): the load never saw a new pid", file: file, line: line)
            }
            hello.track(new)
            waitForChildren(hello, toBe: [new], timeout: 20, "\(what): after the upgrade", file: file, line: line)
            if let expectedVer { XCTAssertEqual(try answer(hello).ver, expectedVer, "\(what)", file: file, line: line) }
        }

        func nextConf() -> String {
            ver += 1
            return HelloProcess.watchConf(port: hello.port, ver: "\(ver)", delaySecond: delay)
        }

        for style in HelloProcess.WriteStyle.allCases {
            let text = nextConf()
            try expectOneUpgrade("\(style)", expectedVer: "\(ver)") { try hello.writeConfig(text, style: style) }
        }
        try expectOneUpgrade("touch", expectedVer: "\(ver)") { try hello.touchConfig() }

        // A burst: 100 in-place writes spread over just under a second, each a new Ver; only the
        // last one counts.
        var burstTook = 0.0
        var longestGap = 0.0
        try expectOneUpgrade("100 writes within 1 s", expectedVer: "burst.99") {
            let start = Date()
            var previous = start
            for i in 0..<100 {
                try hello.writeConfig(HelloProcess.watchConf(port: hello.port, ver: "burst.\(i)", delaySecond: delay), style: .inPlace)
                let now = Date()
                longestGap = max(longestGap, now.timeIntervalSince(previous))
                previous = now
                let wait = start.addingTimeInterval(Double(i + 1) * 0.0098).timeIntervalSinceNow
                if i < 99, wait > 0 { Thread.sleep(forTimeInterval: wait) }
            }
            burstTook = Date().timeIntervalSince(start)
        }
        print("100 writes in \(String(format: "%.3f", burstTook)) s (longest gap \(Int(longestGap * 1000)) ms): one upgrade")
        // What makes it one burst: no gap as long as the quiet period (the whole burst takes
        // ~0.98 s; a busy machine may stretch it a little).
        XCTAssertLessThan(longestGap, delay, "a gap of \(longestGap) s between two writes: not one burst any more")
        XCTAssertLessThan(burstTook, 2, "the burst took \(burstTook) s")
        XCTAssertEqual(hello.logLines(containing: "upgrade failed").count, 0, "\(hello.logLines(containing: "upgrade failed"))")

        let report = load.stop()
        XCTAssertEqual(report.failures, 0, "failed requests: \(report)")
        XCTAssertEqual(report.pids.count, 6, "start + 5 upgrades: \(report)")
        XCTAssertEqual(hello.stop(timeout: 30), .exited(0))
    }

    /// Bad input changes nothing, the log says why, and the next good edit works.
    func testBadDeploysChangeNothingAndSayWhy() throws {
        let delay = 0.2
        let hello = try startHello(mode: .watchConf(ver: "1", delaySecond: delay, passConfig: true))
        let load = startLoad(hello, keepAlive: 2, perRequest: 1)
        let old = try firstPid(load)
        let port = hello.port
        let hexZeros = String(repeating: "0", count: 64)
        func conf(_ ver: String, binName: String = "hello", sha256: String? = nil) -> String {
            HelloProcess.watchConf(port: port, ver: ver, delaySecond: delay, binName: binName, sha256: sha256)
        }
        let size = (try FileManager.default.attributesOfItem(atPath: hello.sourceBinary.path)[.size] as? NSNumber)?.intValue ?? 0
        XCTAssertGreaterThan(size, 1_000_000)

        struct Case {
            var name: String
            /// Prepares files, returns the watch.conf text.
            var prepare: () throws -> String
            /// What `upgrade failed: …` must contain.
            var reason: String
            var cleanUp: () throws -> Void = {}
        }
        let cases: [Case] = [
            Case(name: "malformed JSON", prepare: { #"{"HttpPort": "\#(port)", "Ver": "x1", "#  }, reason: "is not valid JSON"),
            Case(name: "Ver as a number", prepare: { #"{"HttpPort": "\#(port)", "Ver": 2, "DelaySecond": 0.2, "BinName": "hello"}"# },
                 reason: #""Ver" must be a non-empty string"#),
            Case(name: "missing key", prepare: { #"{"HttpPort": "\#(port)", "Ver": "x3", "DelaySecond": 0.2}"# },
                 reason: #""BinName" is missing"#),
            Case(name: "unknown key", prepare: { HelloProcess.watchConf(port: port, ver: "x4", delaySecond: delay, extra: #""Colour": "blue""#) },
                 reason: #""Colour" is not a known key"#),
            Case(name: "negative DelaySecond", prepare: { HelloProcess.watchConf(port: port, ver: "x5", delaySecond: -1) },
                 reason: #""DelaySecond" must be a number of seconds from 0 to 3600"#),
            Case(name: "missing binary", prepare: {
                     guard rename(hello.executable.path, hello.directory.appendingPathComponent("hello.away").path) == 0 else { throw TestError("rename away") }
                     return conf("x6")
                 }, reason: "BinName cannot be found",
                 cleanUp: {
                     guard rename(hello.directory.appendingPathComponent("hello.away").path, hello.executable.path) == 0 else { throw TestError("rename back") }
                 }),
            Case(name: "not executable (0644)", prepare: { try hello.installHello(as: "hello-0644", mode: 0o644); return conf("x7", binName: "hello-0644") },
                 reason: "is not executable (mode 644)"),
            Case(name: "truncated binary", prepare: { try hello.installHello(as: "hello-half", truncatedTo: size / 2); return conf("x8", binName: "hello-half") },
                 reason: "is truncated"),
            Case(name: "directory as BinName", prepare: {
                     try FileManager.default.createDirectory(at: hello.directory.appendingPathComponent("bindir"), withIntermediateDirectories: true)
                     return conf("x9", binName: "bindir")
                 }, reason: "is not a regular file"),
            Case(name: "group-writable binary (0775)", prepare: { try hello.installHello(as: "hello-gw", mode: 0o775); return conf("x10", binName: "hello-gw") },
                 reason: "is writable by group or others (mode 775)"),
            Case(name: "SHA-256 mismatch", prepare: { conf("x11", sha256: hexZeros) }, reason: "watch.conf expects \(hexZeros)"),
        ]

        let startsBefore = hello.logCount("starting (")
        for item in cases {
            let failedBefore = hello.logCount("upgrade failed")
            try hello.writeConfig(try item.prepare())
            guard hello.waitForLog("upgrade failed", moreThan: failedBefore, timeout: 15) else {
                XCTFail("\(item.name): no `upgrade failed` within 15 s")
                try item.cleanUp()
                continue
            }
            // Nothing else is coming for this edit.
            Thread.sleep(forTimeInterval: delay + 0.2)
            let failures = hello.logLines(containing: "upgrade failed")
            XCTAssertEqual(failures.count, failedBefore + 1, "\(item.name): one edit, one failure: \(failures.suffix(3))")
            let line = failures.dropFirst(failedBefore).first ?? ""
            XCTAssertTrue(line.contains(item.reason), "\(item.name): the log should say `\(item.reason)`: \(line)")
            XCTAssertTrue(line.contains("keeps serving"), "\(item.name): \(line)")
            XCTAssertEqual(hello.logCount("starting ("), startsBefore, "\(item.name): a generation was started")
            XCTAssertEqual(hello.servingPid(), old, "\(item.name): another pid answers")
            XCTAssertEqual(hello.children(), [old], "\(item.name): children")
            print("bad deploy (\(item.name)): \(line.components(separatedBy: "[Baton] ").last ?? line)")
            try item.cleanUp()
        }
        let during = load.stats.snapshot
        XCTAssertEqual(during.failures, 0, "failed requests during the bad deploys: \(during)")
        XCTAssertEqual(during.pids, [old], "\(during)")
        XCTAssertEqual(hello.releases().count, 1, "a bad deploy left a release behind: \(hello.releases())")

        // The next good edit upgrades.
        try hello.writeConfig(conf("2"))
        guard let new = load.waitForPid(notIn: [old], timeout: 20) else {
            return XCTFail("the good edit did not upgrade within 20 s: \(load.stats.snapshot)")
        }
        hello.track(new)
        XCTAssertEqual(try answer(hello).ver, "2")
        waitForChildren(hello, toBe: [new], timeout: 20, "after the good edit")
        let report = load.stop()
        XCTAssertEqual(report.failures, 0, "\(report)")
        XCTAssertEqual(report.pidOrder, [old, new], "\(report)")
        XCTAssertEqual(hello.stop(timeout: 30), .exited(0))
    }

    /// A release that dies soon after taking over is rolled back: the previous one serves again,
    /// and no request fails meanwhile.
    func testEarlyCrashRollsBackToThePreviousRelease() throws {
        let hello = try startHello(mode: .watchConf(ver: "1", delaySecond: 0.2, passConfig: true))
        let (load, old) = try startLoadOnOneWorker(hello, keepAlive: 8, perRequest: 1, "before the deploy")

        // Ready at once, dead (exit 3) a second later.
        try HelloProcess.writeFile(hello.directory.appendingPathComponent("crash.py"), """
            #!/usr/bin/env python3
            import os, socket, sys, time
            path = os.environ["NOTIFY_SOCKET"]
            address = "\\0" + path[1:] if path.startswith("@") else path
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.sendto(b"READY=1\\nSTATUS=ready, crashing soon", address)
            time.sleep(1)
            sys.exit(3)

            """, mode: 0o755)
        try hello.writeConfig(HelloProcess.watchConf(port: hello.port, ver: "2", delaySecond: 0.2, binName: "crash.py"))

        XCTAssertTrue(hello.waitForLog("ROLLBACK:", moreThan: 0, timeout: 20), "no ROLLBACK within 20 s")
        guard let back = load.waitForPid(notIn: [old], timeout: 20) else {
            return XCTFail("no new worker answered after the rollback: \(load.stats.snapshot)")
        }
        hello.track(back)
        let fresh = try answer(hello)
        XCTAssertEqual(fresh.ver, "1", "the previous version should serve again")
        XCTAssertEqual(fresh.pid, back)
        waitForChildren(hello, toBe: [back], timeout: 20, "after the rollback")
        Thread.sleep(forTimeInterval: 0.5)
        let report = load.stop()
        print("load around the rollback: \(report)")
        XCTAssertEqual(report.failures, 0, "failed requests around the rollback: \(report)")
        XCTAssertEqual(report.pidOrder, [old, back], "\(report)")
        XCTAssertEqual(hello.logCount("starting (rollback)"), 1)
        for line in hello.logLines(containing: "role=master") where line.contains("ROLLBACK:") || line.contains("starting (") || line.contains(") ready in ") || line.contains("drained in") { print(line) }
        XCTAssertEqual(hello.stop(timeout: 30), .exited(0))
    }

    /// HttpPort changes under load: the old port serves until its generation has drained, then
    /// it is closed; the new port serves the new generation.
    ///
    /// How the old port's clients count: a request fails if anything goes wrong *after the
    /// kernel accepted the connection* (reset, EOF, timeout, bad status), at any time. A connect
    /// refused with ECONNREFUSED is the port being gone: it is the end of that client, not a
    /// failure, but only if the master has closed the port on purpose, which it logs (`closed
    /// listener(s)`) right after close(2); the client waits up to 2 s for that line, and a
    /// refusal without it is a failure. A connection the kernel accepted on the old port while
    /// no process would ever accept it from the queue, reset when the port closes, is a failure
    /// too: the client cannot tell it from a crash.
    func testPortChangeUnderLoad() throws {
        let hello = try startHello(mode: .watchConf(ver: "1", delaySecond: 0.2, passConfig: true))
        let oldPort = hello.port
        let newPort = try freePort()
        let logURL = hello.logURL
        let closedLine = "closed listener(s)"
        let oldLoad = startLoad(port: oldPort, keepAlive: 8, perRequest: 2, portClosed: {
            ((try? String(contentsOf: logURL, encoding: .utf8)) ?? "").contains(closedLine)
        })
        let old = try firstPid(oldLoad)
        waitForChildren(hello, toBe: [old], timeout: 10, "before the port change")

        try hello.writeConfig(HelloProcess.watchConf(port: newPort, ver: "2", delaySecond: 0.2))

        var new: pid_t? = nil
        poll(timeout: 20, interval: 0.05) {
            if case .success(let r) = httpGetOnce(port: newPort, timeout: 2), r.status == 200 { new = r.pid }
            return new != nil
        }
        guard let new else { return XCTFail("the new port \(newPort) did not answer within 20 s") }
        hello.track(new)
        XCTAssertNotEqual(new, old)
        XCTAssertTrue(hello.waitForLog(closedLine, moreThan: 0, timeout: 30), "no `\(closedLine)` within 30 s")
        waitForChildren(hello, toBe: [new], timeout: 10, "after the port change")
        // Every old-port client either ends on the refusal or is stopped now.
        poll(timeout: 5) { oldLoad.stats.snapshot.endedByRefusal == 10 }
        let report = oldLoad.stop()
        print("old port \(oldPort): \(report)")
        XCTAssertEqual(report.failures, 0, "failed requests on the old port: \(report)")
        XCTAssertEqual(report.stuckClients, 0, "\(report)")
        XCTAssertEqual(report.pids, [old], "only the old generation listens on the old port: \(report)")
        XCTAssertEqual(report.endedByRefusal, 10, "every old-port client should end on a refused connect: \(report)")

        // The old port is gone, the new one serves the new generation.
        if case .failure(let error) = httpGetOnce(port: oldPort, timeout: 2), case .connect(let e) = error {
            XCTAssertEqual(e, ECONNREFUSED, "old port: \(error)")
        } else {
            XCTFail("the old port \(oldPort) still accepts connections")
        }
        let newLoad = startLoad(port: newPort, keepAlive: 2, perRequest: 1)
        Thread.sleep(forTimeInterval: 0.5)
        let newReport = newLoad.stop()
        XCTAssertEqual(newReport.failures, 0, "\(newReport)")
        XCTAssertEqual(newReport.pids, [new], "\(newReport)")
        if case .success(let r) = httpGetOnce(port: newPort) {
            XCTAssertEqual(HelloAnswer(r)?.ver, "2")
        } else {
            XCTFail("no answer on the new port")
        }
        for line in hello.logLines(containing: "listen") { print(line) }
        // The old port had no other user: its last generation served what was queued there.
        XCTAssertFalse(hello.logLines(containing: "queue of 127.0.0.1_\(oldPort) taken (last user)").isEmpty
                       && hello.logLines(containing: "queue of 0.0.0.0_\(oldPort) taken (last user)").isEmpty,
                       "the draining generation on the old port did not take its queue:\n\(hello.logLines(containing: "draining").joined(separator: "\n"))")
        XCTAssertEqual(hello.stop(timeout: 30), .exited(0))
    }
}

/// `{"message", "ver", "pid"}` from hello.
struct HelloAnswer: Equatable {
    var ver: String
    var pid: pid_t

    init?(_ response: HTTPResponse) {
        guard response.status == 200,
              let object = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any],
              let ver = object["ver"] as? String, let pid = (object["pid"] as? NSNumber)?.int32Value else { return nil }
        self.ver = ver
        self.pid = pid
    }
}

extension IntegrationTestCase {
    /// A fresh `/hello` answer, decoded; throws when the request fails.
    func answer(_ hello: HelloProcess, path: String = "/hello") throws -> HelloAnswer {
        switch hello.get(path) {
        case .success(let response):
            guard let answer = HelloAnswer(response) else {
                throw TestError("unexpected answer: \(response.status) \(response.bodyText.prefix(200))")
            }
            return answer
        case .failure(let error):
            throw TestError("GET \(path): \(error)")
        }
    }
}
#endif
