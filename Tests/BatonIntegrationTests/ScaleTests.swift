#if os(Linux)
import Foundation
import Glibc
import XCTest

/// Issue 8: no request fails across upgrades at production concurrency on a saturated core.
///
/// `hello` (master and so every worker) is pinned to one CPU and loaded by two `wrk` runs on
/// another CPU at once: 1024 keep-alive connections and 512 connections that send
/// `Connection: close` (a new connection per request). The master gets SIGHUP 5 times, 2 s
/// apart; every socket error and every non-2xx answer counts as a failed request.
///
/// Needs `wrk` (Debian package wrk; `.ci/run` installs it). Without it the test fails, so that CI
/// cannot pass by skipping it; `BATON_SKIP_WRK_TESTS=1` skips it on purpose.
final class ScaleTests: IntegrationTestCase {
    static let keepAliveConnections = 1024
    static let perRequestConnections = 512
    static let upgrades = 5
    /// Seconds from one SIGHUP to the next (longer when a generation is slower to serve).
    static let upgradeInterval: TimeInterval = 2

    func testUpgradesUnderThousandsOfConnectionsOnOneCoreFailNoRequest() throws {
        if ProcessInfo.processInfo.environment["BATON_SKIP_WRK_TESTS"] == "1" {
            throw XCTSkip("BATON_SKIP_WRK_TESTS=1")
        }
        guard let wrk = Locations.find("wrk") else {
            XCTFail("wrk not found in PATH: this test needs it (Debian package wrk). `.ci/run` installs it; "
                    + "or run `apt-get install -y wrk`, or set BATON_SKIP_WRK_TESTS=1 to skip this test.")
            return
        }
        let taskset = try XCTUnwrap(Locations.find("taskset"), "taskset (util-linux) not found in PATH")
        let script = Locations.repositoryRoot.appendingPathComponent("Benchmarks/upgrade-under-load.lua").path
        guard FileManager.default.fileExists(atPath: script) else { throw HelloError("wrk script \(script) is missing") }
        try raiseOpenFileLimit(needed: 4096)

        // The server on the first CPU we may use, wrk on the second (shared when there is one CPU).
        let cpus = try XCTUnwrap(Proc.allowedCPUs(getpid()), "cannot read Cpus_allowed_list of the test process")
        let serverCPU = cpus[0]
        let loadCPU = cpus.count > 1 ? cpus[1] : cpus[0]

        let hello = try startHello(["--drain-timeout", "20"], launcher: [taskset, "-c", "\(serverCPU)"])
        let master = hello.masterPid
        XCTAssertEqual(Proc.allowedCPUs(master), [serverCPU], "master \(master) is not pinned")
        let first = try XCTUnwrap(hello.servingPid(), "no answer before the load")
        XCTAssertEqual(Proc.allowedCPUs(first), [serverCPU], "worker \(first) is not pinned")

        let work = FileManager.default.temporaryDirectory.appendingPathComponent("baton-scale-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }  // failure messages carry wrk's output
        func startWrk(_ name: String, connections: Int, headers: [String]) throws -> WrkRun {
            let run = try WrkRun(name: name, wrk: wrk, taskset: taskset, cpu: loadCPU, connections: connections,
                                 headers: headers, script: script, port: hello.port, directory: work)
            addTeardownBlock { run.kill() }
            return run
        }
        let keepAlive = try startWrk("keep-alive", connections: Self.keepAliveConnections, headers: [])
        let perRequest = try startWrk("close", connections: Self.perRequestConnections, headers: ["Connection: close"])

        // Load is on once the worker holds the keep-alive connections.
        var fds = 0
        let loaded = poll(timeout: 20, interval: 0.1) {
            fds = Proc.openFDCount(first) ?? 0
            return fds >= Self.keepAliveConnections
        }
        XCTAssertTrue(loaded, "worker \(first) has \(fds) fds 20 s after wrk started; wrk: \(keepAlive.output) \(perRequest.output)")
        Thread.sleep(forTimeInterval: 0.5)

        // Upgrades: each new generation must answer a fresh connection before the next SIGHUP.
        var generations: [pid_t] = [first]
        var probeFailures: [String] = []
        for upgrade in 1...Self.upgrades {
            let sent = Date()
            hello.signal(SIGHUP)
            var newPid: pid_t? = nil
            poll(timeout: 30, interval: 0.05) {
                switch hello.get(timeout: 10) {
                case .success(let response) where response.status == 200 && response.pid != nil:
                    if !generations.contains(response.pid!) { newPid = response.pid }
                case .success(let response):
                    probeFailures.append("upgrade \(upgrade): status \(response.status) \(response.bodyText.prefix(100))")
                case .failure(let failure):
                    probeFailures.append("upgrade \(upgrade): \(failure)")
                }
                return newPid != nil
            }
            guard let newPid else {
                XCTFail("upgrade \(upgrade): no new generation answered within 30 s of SIGHUP")
                break
            }
            hello.track(newPid)
            generations.append(newPid)
            XCTAssertEqual(Proc.stat(newPid)?.ppid, master, "upgrade \(upgrade): worker \(newPid) is not a child of the master")
            XCTAssertEqual(Proc.allowedCPUs(newPid), [serverCPU], "upgrade \(upgrade): worker \(newPid) is not pinned")
            let left = Self.upgradeInterval - Date().timeIntervalSince(sent)
            if left > 0 { Thread.sleep(forTimeInterval: left) }
        }

        // The load stays on until the old generations have drained and exited, and a little longer
        // so that the newest generation serves the clients the last drain sent to it.
        let survivors = waitForChildren(hello, count: 1, timeout: 25, "old generations drained under load")
        Thread.sleep(forTimeInterval: Self.upgradeInterval)
        XCTAssertTrue(keepAlive.isRunning && perRequest.isRunning,
                      "wrk ended before it was stopped:\n\(keepAlive.output)\n\(perRequest.output)")
        keepAlive.interrupt()
        perRequest.interrupt()
        let results = [keepAlive, perRequest].map { run in (run, run.finish(timeout: 20)) }

        // Zero failed requests, and real load on every generation.
        var answered = Set(generations)
        var failed = probeFailures.count
        var summary: [String] = []
        for (run, result) in results {
            guard let result else {
                XCTFail("\(run.name): no BATON_RESULT from wrk (exit \(run.status.map { "\($0)" } ?? "none")):\n\(run.output)")
                continue
            }
            answered.formUnion(result.pids.keys)
            hello.track(result.pids.keys)
            failed += result.failed
            summary.append("\(run.name): \(result.line)")
            XCTAssertEqual(result.failed, 0, "\(run.name): \(result.failed) failed requests (socket errors + non-2xx + 2xx without pid):\n\(run.output)")
            XCTAssertGreaterThanOrEqual(result["requests"], Double(run.connections), "\(run.name): too little load:\n\(run.output)")
        }
        XCTAssertEqual(probeFailures, [], "probe requests failed")
        XCTAssertGreaterThanOrEqual(answered.count, Self.upgrades + 1, "distinct worker pids that answered: \(answered.sorted())")
        if let last = generations.last, generations.count == Self.upgrades + 1 {
            XCTAssertEqual(survivors, [last], "the newest generation should be the one left")
        }
        print("scale test: \(Self.upgrades) upgrades, \(failed) failed requests (\(probeFailures.count) probes); generations \(generations)\n  "
              + summary.joined(separator: "\n  "))

        // Same master; SIGTERM ends it and every worker; nothing of wrk is left either.
        XCTAssertTrue(hello.isRunning, "master exited: \(hello.exitStatus.map { "\($0)" } ?? "")")
        let status = hello.stop(timeout: 30)
        XCTAssertEqual(status, .exited(0), "master after SIGTERM: \(status.map { "\($0)" } ?? "did not exit within 30 s")")
        var leftovers: [Proc.Stat] = []
        poll(timeout: 10) {
            leftovers = Proc.all().filter { process in
                process.state != "Z"
                    && (answered.contains(process.pid) || process.pgrp == master || process.pgrp == keepAlive.pid || process.pgrp == perRequest.pid)
            }
            return leftovers.isEmpty
        }
        XCTAssertEqual(leftovers.map(\.pid), [], "processes left after the master and wrk ended: \(leftovers)")
    }

    /// Raises the soft RLIMIT_NOFILE to the hard limit (children inherit it); fails below `needed`.
    private func raiseOpenFileLimit(needed: rlim_t) throws {
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else { throw HelloError("getrlimit: \(String(cString: strerror(errno)))") }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            guard setrlimit(resource, &limit) == 0 else { throw HelloError("setrlimit: \(String(cString: strerror(errno)))") }
        }
        guard limit.rlim_cur >= needed else {
            throw HelloError("open-file limit \(limit.rlim_cur) (hard) is below the \(needed) this test needs; raise it (ulimit -Hn)")
        }
    }
}

/// One `wrk` run with `Benchmarks/upgrade-under-load.lua` (it prints `BATON_RESULT key=value …`
/// and `BATON_PIDS pid:count …`), pinned to a CPU, until `interrupt()`: SIGINT makes wrk stop
/// and print its summary. Output goes to `<directory>/wrk-<name>.txt`.
final class WrkRun {
    let name: String
    let connections: Int
    private let process: TestProcess

    /// What the Lua script reported.
    struct Result {
        var line: String
        var values: [String: Double]
        var pids: [pid_t: Int]
        subscript(key: String) -> Double { values[key] ?? -1 }
        /// Socket errors (connect, read, write, timeout) + non-2xx + 2xx answers without a pid.
        var failed: Int {
            ["connect", "read", "write", "timeout", "non2xx", "nopid"].reduce(0) { $0 + Int(values[$1] ?? 1) }
        }
    }

    init(name: String, wrk: String, taskset: String, cpu: Int, connections: Int, headers: [String], script: String,
         port: UInt16, directory: URL) throws {
        self.name = name
        self.connections = connections
        // -d only bounds a run nobody stops; --timeout well above the latency of a saturated debug
        // build (p99 3 to 7 s on this shared machine, single answers up to 10 s). A request that
        // is never answered still fails: the old generations are killed at the 20 s drain timeout.
        var arguments = ["-c", "\(cpu)", wrk, "-t1", "-c\(connections)", "-d120s", "--timeout", "30s", "-s", script]
        for header in headers { arguments += ["-H", header] }
        arguments.append("http://127.0.0.1:\(port)/hello")
        process = try TestProcess(taskset, arguments, directory: directory.path, environment: cleanEnvironment(),
                                  log: directory.appendingPathComponent("wrk-\(name).txt").path)
    }

    var pid: pid_t { process.pid }
    var isRunning: Bool { process.isRunning }
    var status: ExitStatus? { process.reap() }
    var output: String { process.log }

    func interrupt() { process.signal(SIGINT) }

    /// Waits (bounded) for wrk to exit after `interrupt()`, kills it if it does not, and parses
    /// its result (nil when there is none).
    func finish(timeout: TimeInterval) -> Result? {
        if process.waitForExit(timeout: timeout) == nil { process.killAll() }
        let lines = output.split(separator: "\n")
        guard let line = lines.first(where: { $0.hasPrefix("BATON_RESULT ") }) else { return nil }
        var values: [String: Double] = [:]
        for field in line.split(separator: " ").dropFirst() {
            let pair = field.split(separator: "=", maxSplits: 1)
            if pair.count == 2, let value = Double(pair[1]) { values[String(pair[0])] = value }
        }
        var pids: [pid_t: Int] = [:]
        if let pidLine = lines.first(where: { $0.hasPrefix("BATON_PIDS") }) {
            for field in pidLine.split(separator: " ").dropFirst() {
                let pair = field.split(separator: ":")
                if pair.count == 2, let pid = pid_t(pair[0]), let count = Int(pair[1]) { pids[pid] = count }
            }
        }
        return Result(line: String(line), values: values, pids: pids)
    }

    /// Kills wrk and reaps it (idempotent); for teardown.
    func kill() { process.killAll() }
}
#endif
