#if os(Linux)
import Foundation
import Glibc
import XCTest

/// `baton metrics` (and the HTTP endpoint) count what happened; the control socket bounds what a
/// client can make the master buffer and answers every request, even a cut-off one.
final class MetricsAndControlTests: IntegrationTestCase {

    func testMetricsCountUpgradesFailuresAndReexecutions() throws {
        let metricsPort = try freePort()
        let hello = try startHello(["--metrics-listen", "127.0.0.1:\(metricsPort)"])
        let control = hello.directory.appendingPathComponent(".baton/control.sock").path
        let baton = try Locations.product("baton")
        func run(_ arguments: [String]) throws -> CommandResult {
            try runCommand(baton, arguments + ["--control", control], directory: hello.directory.path)
        }
        XCTAssertEqual(try run(["reload"]).exitCode, 0)
        try hello.replaceBinary(withScript: "#!/bin/sh\nexit 1\n")
        XCTAssertEqual(try run(["reload"]).exitCode, 1, "a broken release must fail the upgrade")
        try hello.restoreBinary()
        XCTAssertEqual(try run(["reload", "--master"]).exitCode, 0)
        let serving = try XCTUnwrap(hello.servingPid())
        hello.track(serving)

        let metrics = try run(["metrics"])
        XCTAssertEqual(metrics.exitCode, 0, "\(metrics)")
        let text = metrics.output
        // Counted before and after the re-execution: the totals travel with the master.
        XCTAssertTrue(text.contains(#"baton_upgrades_total{outcome="succeeded"} 2"#), text)
        XCTAssertTrue(text.contains(#"baton_upgrades_total{outcome="failed"} 1"#), text)
        XCTAssertTrue(text.contains(#"baton_master_reexecutions_total{outcome="succeeded"} 1"#), text)
        XCTAssertTrue(text.contains(#"baton_generations{state="serving"} 1.0"#), text)
        XCTAssertTrue(text.contains(#"baton_serving_info{version="1",generation="4",pid="\#(serving)"} 1.0"#), text)
        XCTAssertTrue(text.contains("baton_time_to_ready_seconds_count 1"), "one generation became ready since the re-execution\n\(text)")
        XCTAssertTrue(text.contains("# TYPE baton_drain_seconds histogram"), text)

        // The same over HTTP, on its own address (the new image bound it again).
        guard case .success(let response) = httpGetOnce(port: metricsPort, path: "/metrics") else {
            return XCTFail("no metrics endpoint on \(metricsPort)")
        }
        XCTAssertEqual(response.status, 200)
        XCTAssertTrue(response.bodyText.contains(#"baton_upgrades_total{outcome="failed"} 1"#), response.bodyText)
        if case .success(let other) = httpGetOnce(port: metricsPort, path: "/hello") { XCTAssertEqual(other.status, 404) }
    }

    func testMetricsAddressMayNotBeTheAppsPort() throws {
        let port = try freePort()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("baton-metrics-\(UUID().uuidString.prefix(6))").path
        XCTAssertEqual(mkdir(directory, 0o755), 0)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let result = try runCommand(try Locations.product("hello"), ["--port", String(port), "--metrics-listen", "0.0.0.0:\(port)"],
                                    directory: directory, timeout: 30)
        XCTAssertNotEqual(result.exitCode, 0, "\(result)")
        XCTAssertTrue(result.output.contains("the metrics address must not be one of the app's listeners"), "\(result)")
    }

    /// A 10 MB line without a newline is refused after 4 KiB (the master does not grow by it), and
    /// a request cut off by a half-close gets an answer too.
    func testOversizedAndTruncatedControlRequestsGetAnAnswer() throws {
        let hello = try startHello()
        let control = hello.directory.appendingPathComponent(".baton/control.sock").path
        let rssBefore = try XCTUnwrap(Self.rssKiB(hello.masterPid))

        let huge = try unixRoundTrip(path: control, sendBytes: [UInt8](repeating: UInt8(ascii: "x"), count: 10 << 20), halfClose: true)
        XCTAssertTrue(huge.contains(#""ok":false"#) && huge.contains("request too long"), huge)
        let cut = try unixRoundTrip(path: control, sendBytes: Array(#"{"command":"status"}"#.utf8), halfClose: true)
        XCTAssertTrue(cut.contains(#""ok":false"#) && cut.contains("truncated"), cut)
        let empty = try unixRoundTrip(path: control, sendBytes: [], halfClose: true)
        XCTAssertTrue(empty.contains(#""ok":false"#), empty)

        let rssAfter = try XCTUnwrap(Self.rssKiB(hello.masterPid))
        XCTAssertLessThan(rssAfter - rssBefore, 4096, "the master grew by \(rssAfter - rssBefore) KiB")
        let status = try unixRoundTrip(path: control, send: "{\"command\":\"status\"}\n")
        XCTAssertTrue(status.contains(#""ok":true"#), status)
        XCTAssertTrue(hello.isRunning)
    }

    static func rssKiB(_ pid: pid_t) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return nil }
        return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1])
    }
}
#endif
