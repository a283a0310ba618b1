#if os(Linux)
import BatonTestSupport
import Foundation
import Glibc
import XCTest

/// Canary upgrades with real processes: hello under load, a good release promoted after its
/// window, bad ones (errors, latency; made with hello's test aids) rolled back by themselves, and
/// the window ended by hand.
final class CanaryTests: IntegrationTestCase {
    func testAGoodCanaryServesItsShareAndIsPromotedWithoutAFailedRequest() throws {
        let hello = try startHello(mode: .watchConf(ver: "1", delaySecond: 0.2, passConfig: true))
        let load = startLoad(hello, keepAlive: 24, perRequest: 4)
        let first = try firstPid(load)
        try hello.writeConfig(HelloProcess.watchConf(port: hello.port, ver: "2", delaySecond: 0.2,
                                                     extra: #""Canary": {"Percent": 25, "Seconds": 4, "MinRequests": 50}"#))
        XCTAssertTrue(hello.waitForLog("it takes 25% of the traffic from generation 1", timeout: 30), hello.logExcerpt())
        let status = try baton(["status", "--config", hello.configURL.path])
        XCTAssertTrue(status.output.contains("canary: generation 2"), status.description)
        XCTAssertTrue(status.output.split(separator: "\n").contains { $0.hasPrefix("2 ") && $0.contains(" canary ") },
                      "the canary's state in the table: \(status.output)")
        guard let canary = load.waitForPid(notIn: [first], timeout: 10) else { return XCTFail("the canary answered nothing: \(load.stats.snapshot)") }
        // The keep-alive connections it got: a quarter of those open, rounded.
        let shared = try XCTUnwrap(Self.match(#"passing 25% of new connections to the canary, and (\d+) of (\d+) open"#, in: hello.log),
                                   hello.logExcerpt())
        XCTAssertEqual(shared[0], (shared[1] * 25 + 50) / 100, "share of the open connections")
        XCTAssertTrue(hello.waitForLog("canary generation 2 (pid \(canary), version 2) promoted: passed", timeout: 30), hello.logExcerpt())
        XCTAssertTrue(hello.waitForLog("generation 1 (pid \(first), version 1) drained", timeout: 30), hello.logExcerpt())
        let report = load.stop()
        XCTAssertEqual(report.failures, 0, "\(report)")
        XCTAssertEqual(report.pids, [first, canary], "\(report)")
        let after = try baton(["status", "--config", hello.configURL.path])
        XCTAssertTrue(after.output.contains("last canary: promoted: passed: canary "), after.description)
        let metrics = try baton(["metrics", "--config", hello.configURL.path])
        XCTAssertTrue(metrics.output.contains(#"baton_canaries_total{outcome="promoted"} 1"#), metrics.output)
    }

    func testACanaryAnsweringErrorsIsRolledBackByItselfBeforeItsWindowEnds() throws {
        // Version 2 answers 500 to 20% of its requests; the watcher waits an hour, so the change
        // to watch.conf goes with `baton reload --canary`.
        let hello = try startHello(["--inject-errors", "20", "--inject-into-version", "2"],
                                   mode: .watchConf(ver: "1", delaySecond: 3600, passConfig: true))
        let load = startLoad(hello, keepAlive: 24, perRequest: 4)
        let first = try firstPid(load)
        try hello.writeConfig(HelloProcess.watchConf(port: hello.port, ver: "2", delaySecond: 3600))
        let started = Date()
        let reload = try baton(["reload", "--config", hello.configURL.path, "--canary", "--canary-percent", "20", "--canary-seconds", "60"],
                               timeout: 120)
        XCTAssertEqual(reload.exitCode, 3, reload.description)
        XCTAssertTrue(reload.output.contains("canary rolled back: 5xx rate"), reload.description)
        XCTAssertLessThan(Date().timeIntervalSince(started), 40, "rolled back on the evidence, not at the window's end")
        XCTAssertTrue(hello.waitForLog("generation 2 (pid", timeout: 5))
        XCTAssertTrue(hello.waitForLog(#"version 2) drained in"#, timeout: 30), hello.logExcerpt())
        let report = load.stop()
        XCTAssertEqual(report.failures, report.statusFailures, "no socket error, only the canary's 500s: \(report)")
        XCTAssertGreaterThan(report.statusFailures, 0, "\(report)")
        if case .success(let answer) = hello.get() { XCTAssertEqual(answer.pid, first, "the serving release serves on") } else { XCTFail("no answer") }
        let status = try baton(["status", "--config", hello.configURL.path])
        XCTAssertTrue(status.output.contains("last canary: rolled back: 5xx rate"), status.description)
        let metrics = try baton(["metrics", "--config", hello.configURL.path])
        XCTAssertTrue(metrics.output.contains(#"baton_canaries_total{outcome="rolled_back"} 1"#), metrics.output)
    }

    func testASlowCanaryIsRolledBackOnLatency() throws {
        let hello = try startHello(["--inject-latency", "80", "--inject-into-version", "2"],
                                   mode: .watchConf(ver: "1", delaySecond: 3600, passConfig: true))
        let load = startLoad(hello, keepAlive: 24, perRequest: 4)
        _ = try firstPid(load)
        try hello.writeConfig(HelloProcess.watchConf(port: hello.port, ver: "2", delaySecond: 3600))
        let reload = try baton(["reload", "--config", hello.configURL.path, "--canary", "--canary-percent", "25", "--canary-seconds", "4"],
                               timeout: 120)
        XCTAssertEqual(reload.exitCode, 3, reload.description)
        XCTAssertTrue(reload.output.contains("canary rolled back: p99 latency") || reload.output.contains("canary rolled back: median latency"), reload.description)
        let report = load.stop()
        XCTAssertEqual(report.failures, 0, "\(report)")
    }

    func testTheWindowEndsByHand() throws {
        let hello = try startHello(mode: .watchConf(ver: "1", delaySecond: 3600, passConfig: true))
        let load = startLoad(hello, keepAlive: 8, perRequest: 2)
        let first = try firstPid(load)
        let config = hello.configURL.path
        XCTAssertEqual(try baton(["abort", "--config", config]).exitCode, 1, "no canary is running")
        for (command, version, code) in [("abort", "2", Int32(3)), ("promote", "3", 0)] {
            try hello.writeConfig(HelloProcess.watchConf(port: hello.port, ver: version, delaySecond: 3600))
            var ended: CommandResult?
            let reload = try baton(["reload", "--config", config, "--canary", "--canary-seconds", "600"], timeout: 120) {
                guard ended == nil, hello.log.contains("version \(version)) ready in"), hello.log.contains("from generation") else { return }
                ended = try? baton([command, "--config", config])
            }
            XCTAssertEqual(ended?.exitCode, 0, "\(command): \(ended?.description ?? "never ran")")
            XCTAssertEqual(reload.exitCode, code, "\(command): \(reload)")
            XCTAssertTrue(reload.output.contains("by hand (baton \(command))"), reload.output)
        }
        XCTAssertTrue(hello.waitForLog("generation 1 (pid \(first), version 1) drained", timeout: 30), hello.logExcerpt())
        let report = load.stop()
        XCTAssertEqual(report.failures, 0, "\(report)")
        if case .success(let answer) = hello.get() { XCTAssertEqual(answer.bodyText.contains(#""ver":"3""#), true, answer.bodyText) }
    }

    /// The integers captured by `pattern`'s groups in the first match in `text`.
    static func match(_ pattern: String, in text: String) -> [Int]? {
        guard let regex = try? NSRegularExpression(pattern: pattern),
              let found = regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) else { return nil }
        return (1..<found.numberOfRanges).compactMap { Range(found.range(at: $0), in: text).flatMap { Int(text[$0]) } }
    }
}
#endif
