#if os(Linux)
import Foundation
import XCTest

/// The example deploy files in deploy/ keep the relations their READMEs promise (the timeouts in
/// the right order, the master doing the draining, the control socket in RuntimeDirectory).
final class DeployFilesTests: XCTestCase {
    private func read(_ path: String) throws -> String {
        try String(contentsOf: Locations.repositoryRoot.appendingPathComponent(path), encoding: .utf8)
    }

    /// `Key=value` settings of a unit file (the last one wins, comments skipped).
    private func settings(_ text: String) -> [String: String] {
        var result: [String: String] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") && !line.hasPrefix(";") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            result[line[..<equals].trimmingCharacters(in: .whitespaces)] = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
        }
        return result
    }

    private func seconds(_ value: String?) -> Double? {
        guard let value else { return nil }
        return Double(value.hasSuffix("s") ? String(value.dropLast()) : value)
    }

    /// The number after `option` in a command line.
    private func option(_ option: String, in command: String?) -> Double? {
        guard let words = command?.split(separator: " ").map(String.init), let index = words.firstIndex(of: option),
              index + 1 < words.count else { return nil }
        return Double(words[index + 1])
    }

    /// A master killed outright is started again by its keeper, not by systemd, and the unit
    /// stays active meanwhile (real-systemd.sh shows it): the settings that takes together.
    private func assertTheKeeperRestartsTheMaster(_ unit: [String: String], _ name: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertTrue(unit["ExecStart"]?.split(separator: " ").contains("--respawn-master") == true, "\(name): no --respawn-master", file: file, line: line)
        XCTAssertEqual(unit["ExitType"], "cgroup", "\(name): the unit must stay active while the master is gone", file: file, line: line)
        let success = Set((unit["SuccessExitStatus"] ?? "").split(separator: " ").map(String.init))
        XCTAssertTrue(success.isSuperset(of: ["SIGKILL", "SIGSEGV", "SIGABRT", "SIGILL", "SIGTRAP"]),
                      "\(name): a master killed by a signal must not fail the unit (SuccessExitStatus=\(success.sorted()))", file: file, line: line)
        XCTAssertEqual(unit["NotifyAccess"], "all", "\(name): the respawned master says MAINPID=", file: file, line: line)
        XCTAssertEqual(unit["Restart"], "always", "\(name): the safety net when the cgroup empties", file: file, line: line)
        XCTAssertEqual(unit["OOMPolicy"], "continue", name, file: file, line: line)
    }

    func testServiceUnitsLetTheMasterDrainWithinSystemdsTimeouts() throws {
        for name in ["hello.service", "hello-sync-reload.service"] {
            let unit = settings(try read("deploy/systemd/\(name)"))
            // A dead master's workers survive for its successor to adopt (README "When the master dies").
            XCTAssertEqual(unit["KillMode"], "process", name)
            XCTAssertEqual(unit["RuntimeDirectoryPreserve"], "restart", name)
            assertTheKeeperRestartsTheMaster(unit, name)
            XCTAssertEqual(unit["RuntimeDirectory"], "hello", name)
            XCTAssertEqual(unit["RuntimeDirectoryMode"], "0700", name)
            XCTAssertEqual(unit["NoNewPrivileges"], "yes", name)
            let start = unit["ExecStart"]
            guard let drain = option("--drain-timeout", in: start), let ready = option("--ready-timeout", in: start),
                  let stopTimeout = seconds(unit["TimeoutStopSec"]), let startTimeout = seconds(unit["TimeoutStartSec"]) else {
                return XCTFail("\(name): ExecStart needs --drain-timeout and --ready-timeout, and TimeoutStopSec/TimeoutStartSec must be set")
            }
            XCTAssertGreaterThan(stopTimeout, drain + 5, "\(name): TimeoutStopSec must leave the master time to drain")
            XCTAssertGreaterThan(startTimeout, ready + 5, "\(name): TimeoutStartSec must outlast --ready-timeout")
        }
        let notifyReload = settings(try read("deploy/systemd/hello.service"))
        XCTAssertEqual(notifyReload["Type"], "notify-reload")
        XCTAssertEqual(notifyReload["ReloadSignal"], "SIGHUP")
        XCTAssertNil(notifyReload["ExecReload"])

        let sync = settings(try read("deploy/systemd/hello-sync-reload.service"))
        XCTAssertEqual(sync["Type"], "notify")
        let reload = sync["ExecReload"] ?? ""
        XCTAssertTrue(reload.hasSuffix("baton reload") || reload.contains("baton reload "), reload)
        if let timeout = option("--timeout", in: reload), let startTimeout = seconds(sync["TimeoutStartSec"]) {
            XCTAssertLessThan(timeout, startTimeout, "baton reload must answer before systemd kills it")
        }
    }

    /// The packaged template: the same rules as hello-sync-reload.service (synchronous reload that
    /// answers before systemd's timeout, the master drains), for the app in /srv/<instance>.
    func testTemplateUnitRunsTheAppFolderWithASynchronousReload() throws {
        let unit = settings(try read("deploy/systemd/baton@.service"))
        XCTAssertEqual(unit["Type"], "notify")
        XCTAssertEqual(unit["KillMode"], "process")
        XCTAssertEqual(unit["RuntimeDirectoryPreserve"], "restart", "the keeper's adopt socket lives there")
        assertTheKeeperRestartsTheMaster(unit, "baton@.service")
        XCTAssertEqual(unit["NoNewPrivileges"], "yes")
        XCTAssertEqual(unit["WorkingDirectory"], "/srv/%i")
        XCTAssertEqual(unit["RuntimeDirectory"], "baton/%i")
        XCTAssertEqual(unit["RuntimeDirectoryMode"], "0700")
        let start = unit["ExecStart"] ?? ""
        XCTAssertTrue(start.hasPrefix("/usr/bin/baton run --config /srv/%i/watch.conf"), start)
        let reload = unit["ExecReload"] ?? ""
        XCTAssertTrue(reload.hasPrefix("/usr/bin/baton reload"), reload)
        guard let drain = option("--drain-timeout", in: start), let ready = option("--ready-timeout", in: start),
              let stopTimeout = seconds(unit["TimeoutStopSec"]), let startTimeout = seconds(unit["TimeoutStartSec"]),
              let reloadTimeout = option("--timeout", in: reload) else {
            return XCTFail("baton@.service: --drain-timeout, --ready-timeout, reload --timeout, TimeoutStopSec and TimeoutStartSec must be set")
        }
        XCTAssertGreaterThan(stopTimeout, drain + 5)
        XCTAssertGreaterThan(startTimeout, ready + 5)
        XCTAssertLessThan(reloadTimeout, startTimeout)
        XCTAssertGreaterThan(reloadTimeout, ready, "baton reload must wait longer than the master waits for readiness")
        // Releases are staged in <app>/.baton: that must be the service's own writable state folder.
        XCTAssertEqual(unit["StateDirectory"], "baton/%i")
        XCTAssertEqual(unit["BindPaths"], "/var/lib/baton/%i:/srv/%i/.baton")
    }

    func testSocketUnitHandsOneSocketToTheMaster() throws {
        let socket = settings(try read("deploy/systemd/hello.socket"))
        XCTAssertEqual(socket["Accept"], "no")
        XCTAssertNotNil(socket["ListenStream"])
        XCTAssertEqual(socket["FileDescriptorName"], "http")
    }

    func testNginxUpstreamKeepsAliveAndRetriesOnlySafely() throws {
        let config = try read("deploy/nginx/baton-upstream.conf")
            .split(separator: "\n").map { $0.split(separator: "#", maxSplits: 1).first.map(String.init) ?? "" }.joined(separator: "\n")
        XCTAssertTrue(config.contains("keepalive 64;"))
        XCTAssertTrue(config.contains("proxy_http_version 1.1;"))
        XCTAssertTrue(config.contains(#"proxy_set_header Connection "";"#))
        XCTAssertTrue(config.contains("server 127.0.0.1:8080;"), "behind-nginx.sh rewrites this line")
        XCTAssertTrue(config.contains("listen 80;"), "behind-nginx.sh rewrites this line")
        guard let line = config.split(separator: "\n").first(where: { $0.contains("proxy_next_upstream ") }) else {
            return XCTFail("no proxy_next_upstream")
        }
        XCTAssertFalse(line.contains("non_idempotent"), String(line))
        XCTAssertFalse(line.contains("http_5"), String(line))
    }
}
#endif
