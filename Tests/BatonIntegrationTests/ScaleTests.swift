#if os(Linux)
import Foundation
import Glibc
import XCTest

/// Issue 8: no request fails across upgrades at production concurrency on a saturated core.
///
/// `hello` (master and so every worker) is pinned to one CPU and loaded by two runs of the Go load
/// client `Benchmarks/handoff/loadclient` on another CPU at once: 1024 keep-alive connections and
/// 512 connections that send `Connection: close` (a new connection per request). The master gets
/// SIGHUP 5 times, 2 s apart. A failed request is a socket error, a non-2xx answer, a request
/// slower than 10 s, or one still unanswered when the client gives up 11 s after the load
/// stopped: the client waits for every request in flight at the end, so none goes uncounted
/// (wrk drops those silently, and its timeout counter missed stalls in runs this short). Every
/// generation must have served real load, by the client's own count of the pid in each answer.
///
/// `hello` is the release build (`Packaging/swift-build-static.sh`, shared with StaticBinaryTests,
/// or `BATON_STATIC_BIN_DIR`): a debug build on one saturated core answers single requests in up
/// to 10 s, which is the bound. Needs `go` (Debian package golang-go; `.ci/run` installs it) to
/// build the client from source (standard library only). Without it the test fails, so that CI
/// cannot pass by skipping it; `BATON_SKIP_SCALE_TESTS=1` skips it on purpose (an error in CI).
final class ScaleTests: IntegrationTestCase {
    static let keepAliveConnections = 1024
    static let perRequestConnections = 512
    static let upgrades = 5
    /// Seconds from one SIGHUP to the next (longer when a generation is slower to serve).
    static let upgradeInterval: TimeInterval = 2
    /// Seconds of load: 2 s before the first SIGHUP, then the upgrades, then time for the drains.
    static let loadSeconds = 20
    /// A request slower than this fails.
    static let requestTimeout = 10

    func testUpgradesUnderThousandsOfConnectionsOnOneCoreFailNoRequest() throws {
        if ProcessInfo.processInfo.environment["BATON_SKIP_SCALE_TESTS"] == "1" {
            throw skipOrFail("BATON_SKIP_SCALE_TESTS=1")
        }
        guard let go = Locations.find("go", preferring: ["/usr/bin/go", "/usr/lib/go/bin/go"]) else {
            XCTFail("go not found in PATH: this test builds Benchmarks/handoff/loadclient with it (Debian package golang-go). "
                    + "`.ci/run` installs it; or run `apt-get install -y golang-go`, or set BATON_SKIP_SCALE_TESTS=1 to skip this test.")
            return
        }
        let taskset = try XCTUnwrap(Locations.find("taskset"), "taskset (util-linux) not found in PATH")
        try raiseOpenFileLimit(needed: 4096)

        let work = FileManager.default.temporaryDirectory.appendingPathComponent("baton-scale-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }  // failure messages carry the clients' output
        let client = try Self.buildLoadClient(go: go, into: work)
        let release = try StaticBuild.binaries().hello

        // The server on the first CPU we may use, the clients on the second (shared when there is one CPU).
        let cpus = try XCTUnwrap(Proc.allowedCPUs(getpid()), "cannot read Cpus_allowed_list of the test process")
        let serverCPU = cpus[0]
        let loadCPU = cpus.count > 1 ? cpus[1] : cpus[0]

        // HelloProcess copies the binary BATON_HELLO_BINARY names at start; the variable is set
        // only for that moment (cleanEnvironment keeps BATON_* away from the processes under test).
        let previous = ProcessInfo.processInfo.environment["BATON_HELLO_BINARY"]
        setenv("BATON_HELLO_BINARY", release, 1)
        let started = Result { try startHello(["--drain-timeout", "20"], launcher: [taskset, "-c", "\(serverCPU)"]) }
        if let previous { setenv("BATON_HELLO_BINARY", previous, 1) } else { unsetenv("BATON_HELLO_BINARY") }
        let hello = try started.get()
        let master = hello.masterPid
        XCTAssertEqual(Proc.allowedCPUs(master), [serverCPU], "master \(master) is not pinned")
        let first = try XCTUnwrap(hello.servingPid(), "no answer before the load")
        XCTAssertEqual(Proc.allowedCPUs(first), [serverCPU], "worker \(first) is not pinned")

        func startClient(_ name: String, connections: Int, close: Bool) throws -> LoadClientRun {
            let run = try LoadClientRun(name: name, client: client, taskset: taskset, cpu: loadCPU, connections: connections,
                                        close: close, seconds: Self.loadSeconds, timeout: Self.requestTimeout,
                                        port: hello.port, directory: work)
            addTeardownBlock { run.kill() }
            return run
        }
        let keepAlive = try startClient("keep-alive", connections: Self.keepAliveConnections, close: false)
        let perRequest = try startClient("close", connections: Self.perRequestConnections, close: true)

        // The measured period starts once each client has opened every connection.
        let ramped = poll(timeout: 60, interval: 0.05) { keepAlive.measuring && perRequest.measuring }
        XCTAssertTrue(ramped, "the load clients did not open their connections within 60 s:\n\(keepAlive.output)\n\(perRequest.output)")
        Thread.sleep(forTimeInterval: 2)

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

        // The clients stop by themselves after loadSeconds and wait for their requests in flight
        // (at most timeout + 1 s); then the old generations drain what is left and exit.
        let results = [keepAlive, perRequest].map { run in (run, run.finish(timeout: TimeInterval(Self.loadSeconds + Self.requestTimeout + 20))) }
        let survivors = waitForChildren(hello, count: 1, timeout: 25, "old generations drained after the load")

        // Zero failed requests, and real load on every generation by the clients' own per-pid counts.
        var answers: [pid_t: Int] = [:]
        var failed = probeFailures.count
        var summary: [String] = []
        for (run, result) in results {
            guard let result else {
                XCTFail("\(run.name): no summary from the load client (exit \(run.status.map { "\($0)" } ?? "none")):\n\(run.output)")
                continue
            }
            for (pid, count) in result.pids { answers[pid, default: 0] += count }
            hello.track(result.pids.keys)
            failed += result.failures
            summary.append("\(run.name): \(result.line)")
            XCTAssertEqual(result.failures, 0, "\(run.name): \(result.failures) failed requests \(result.failureKinds) "
                           + "(socket errors, non-2xx, slower than \(Self.requestTimeout) s, unanswered at the end):\n\(run.output)")
            XCTAssertFalse(result.unfinished, "\(run.name): requests still in flight \(Self.requestTimeout + 1) s after the load stopped:\n\(run.output)")
            XCTAssertGreaterThanOrEqual(result.requests, run.connections, "\(run.name): too little load:\n\(run.output)")
        }
        XCTAssertEqual(probeFailures, [], "probe requests failed")
        // "Real load": at least 100 answers and a twentieth of an even share of all answers.
        let total = answers.values.reduce(0, +)
        let least = max(100, total / max(1, generations.count) / 20)
        for pid in generations {
            XCTAssertGreaterThanOrEqual(answers[pid] ?? 0, least,
                                        "generation pid \(pid) answered \(answers[pid] ?? 0) of \(total) requests; per pid: \(answers.sorted { $0.key < $1.key })")
        }
        if let last = generations.last, generations.count == Self.upgrades + 1 {
            XCTAssertEqual(survivors, [last], "the newest generation should be the one left")
        }
        print("scale test: \(Self.upgrades) upgrades, \(failed) failed requests (\(probeFailures.count) probes); answers per generation "
              + generations.map { "\($0): \(answers[$0] ?? 0)" }.joined(separator: ", ") + "\n  " + summary.joined(separator: "\n  "))

        // Same master; SIGTERM ends it and every worker; nothing of the clients is left either.
        XCTAssertTrue(hello.isRunning, "master exited: \(hello.exitStatus.map { "\($0)" } ?? "")")
        let status = hello.stop(timeout: 30)
        XCTAssertEqual(status, .exited(0), "master after SIGTERM: \(status.map { "\($0)" } ?? "did not exit within 30 s")")
        let pids = Set(generations).union(answers.keys)
        var leftovers: [Proc.Stat] = []
        poll(timeout: 10) {
            leftovers = Proc.all().filter { process in
                process.state != "Z"
                    && (pids.contains(process.pid) || process.pgrp == master || process.pgrp == keepAlive.pid || process.pgrp == perRequest.pid)
            }
            return leftovers.isEmpty
        }
        XCTAssertEqual(leftovers.map(\.pid), [], "processes left after the master and the clients ended: \(leftovers)")
    }

    /// `go build` of Benchmarks/handoff/loadclient (standard library only, GOPATH mode: no module
    /// proxy, no network) into `folder`.
    static func buildLoadClient(go: String, into folder: URL) throws -> String {
        let source = Locations.repositoryRoot.appendingPathComponent("Benchmarks/handoff/loadclient").path
        let output = folder.appendingPathComponent("loadclient").path
        let environment = cleanEnvironment(["GO111MODULE": "off", "GOFLAGS": "", "GOCACHE": folder.appendingPathComponent("gocache").path,
                                            "HOME": ProcessInfo.processInfo.environment["HOME"] ?? folder.path])
        let build = try runCommand(go, ["build", "-o", output, "."], directory: source, environment: environment, timeout: 300)
        guard build.exitCode == 0 else { throw HelloError("go build of \(source) failed: \(build)") }
        return output
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

/// One run of `Benchmarks/handoff/loadclient` (`-summary`: a JSON object with the totals on
/// standard output once it is done), pinned to a CPU, for a fixed time. Output (its summary and
/// its messages on standard error) goes to `<directory>/loadclient-<name>.txt`.
final class LoadClientRun {
    let name: String
    let connections: Int
    private let process: TestProcess
    private let readyFile: String

    /// What the client reported.
    struct Result {
        var line: String
        var requests: Int
        var failures: Int
        var failureKinds: [String: Int]
        var unfinished: Bool
        var pids: [pid_t: Int]
    }

    init(name: String, client: String, taskset: String, cpu: Int, connections: Int, close: Bool, seconds: Int, timeout: Int,
         port: UInt16, directory: URL) throws {
        self.name = name
        self.connections = connections
        readyFile = directory.appendingPathComponent("ready-\(name)").path
        var arguments = ["-c", "\(cpu)", client, "-addr", "127.0.0.1:\(port)", "-c", "\(connections)", "-d", "\(seconds)s",
                         "-timeout", "\(timeout)s", "-ready-file", readyFile, "-summary"]
        if close { arguments.append("-close") }
        process = try TestProcess(taskset, arguments, directory: directory.path, environment: cleanEnvironment(),
                                  log: directory.appendingPathComponent("loadclient-\(name).txt").path)
    }

    var pid: pid_t { process.pid }
    var status: ExitStatus? { process.reap() }
    var output: String { process.log }
    /// Every connection is open: the measured period has started.
    var measuring: Bool { FileManager.default.fileExists(atPath: readyFile) }

    /// Waits (bounded) for the client to exit by itself, kills it if it does not, and parses its
    /// summary (nil when there is none).
    func finish(timeout: TimeInterval) -> Result? {
        if process.waitForExit(timeout: timeout) == nil { process.killAll() }
        // The summary is the indented JSON object from a line "{" to the last line "}".
        let lines = output.split(separator: "\n", omittingEmptySubsequences: false)
        guard let open = lines.firstIndex(of: "{"), let close = lines.lastIndex(of: "}"), open < close,
              let object = try? JSONSerialization.jsonObject(with: Data(lines[open...close].joined(separator: "\n").utf8)) as? [String: Any]
        else { return nil }
        func int(_ value: Any?) -> Int {
            if let value = value as? Int { return value }
            if let value = value as? Double { return Int(value) }
            return (value as? NSNumber)?.intValue ?? -1
        }
        func bool(_ value: Any?) -> Bool? { (value as? Bool) ?? (value as? NSNumber)?.boolValue }
        let kinds = (object["failure_kinds"] as? [String: Any] ?? [:]).mapValues(int).filter { $0.value != 0 }
        var pids: [pid_t: Int] = [:]
        for (pid, count) in object["pids"] as? [String: Any] ?? [:] {
            if let pid = pid_t(pid), pid > 0 { pids[pid] = int(count) }
        }
        let requests = int(object["requests_ok"]), failures = int(object["failures"])
        let line = "\(requests) ok, \(failures) failed \(kinds), p99 \(object["p99_ms"] ?? "?") ms, max \(object["max_ms"] ?? "?") ms, "
            + "reconnects \(int(object["reconnects"])), pids \(pids.count)"
        return Result(line: line, requests: requests, failures: failures, failureKinds: kinds,
                      unfinished: bool(object["unfinished"]) ?? true, pids: pids)
    }

    /// Kills the client and reaps it (idempotent); for teardown.
    func kill() { process.killAll() }
}
#endif
