#if os(Linux)
import Foundation
import Glibc
import XCTest

/// Base class of the process tests: gives each test a fresh temp directory (the working directory
/// of what ``start(_:_:in:environment:logName:)`` and ``baton(_:in:timeout:whileWaiting:)`` run,
/// so each master's control socket is its own), kills every process and load it started in
/// tearDown (also after a failure), and attaches their logs to a failing test.
open class IntegrationTestCase: XCTestCase {
    package private(set) var directory = ""
    private var processes: [TestProcess] = []
    private var loads: [LoadRunner] = []
    private var failed = false

    open override func setUpWithError() throws {
        try super.setUpWithError()
        // A write to a socket the server closed must be an error, not the end of the test run.
        Glibc.signal(SIGPIPE, SIG_IGN)
        processes = []
        loads = []
        failed = false
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("baton-op-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        chmod(folder.path, 0o755)
        directory = folder.path
    }

    open override func tearDown() {
        for load in loads { load.stop() }
        for process in processes { process.killAll() }
        if failed {
            for process in processes {
                super.recordFailure(
                    withDescription: "log of \(process.command.joined(separator: " ")) (pid \(process.pid), kept at \(process.logPath)):\n\(process.logExcerpt())",
                    inFile: #filePath, atLine: #line, expected: true)
            }
            rmdir(directory)  // kept only when the test wrote something there (a hello test keeps its own folder)
        } else {
            try? FileManager.default.removeItem(atPath: directory)
        }
        for case let hello as HelloProcess in processes { hello.cleanUp(keepLog: failed) }
        processes = []
        loads = []
        super.tearDown()
    }

    open override func recordFailure(withDescription description: String, inFile filePath: String, atLine lineNumber: Int, expected: Bool) {
        failed = true
        super.recordFailure(withDescription: description, inFile: filePath, atLine: lineNumber, expected: expected)
    }

    // MARK: Starting things

    /// Starts a hello master (cleaned up in tearDown) and waits until it serves; see
    /// `HelloProcess.init` for `launcher` and `binary`.
    package func startHello(_ extraArguments: [String] = [], mode: HelloProcess.Mode = .port, launcher: [String] = [],
                            binary: String = "hello") throws -> HelloProcess {
        let hello = try HelloProcess(extraArguments: extraArguments, mode: mode, launcher: launcher, binary: binary)
        processes.append(hello)
        return hello
    }

    /// Starts a long-running process (killed in tearDown) in `folder` (default: the test's
    /// directory) with its output in `logName` there.
    package func start(_ executable: String, _ arguments: [String], in folder: String? = nil, environment: [String: String] = cleanEnvironment(),
                       logName: String = "master.log") throws -> TestProcess {
        let process = try TestProcess(executable, arguments, directory: folder ?? directory, environment: environment,
                                      log: "\(directory)/\(logName)")
        processes.append(process)
        return process
    }

    /// `baton ARGS` run to completion in `folder` (default: the test's directory).
    package func baton(_ arguments: [String], in folder: String? = nil, timeout: TimeInterval = 60,
                       whileWaiting: () -> Void = {}) throws -> CommandResult {
        try runCommand(try Locations.product("baton"), arguments, directory: folder ?? directory, timeout: timeout,
                       whileWaiting: whileWaiting)
    }

    /// Starts load against `hello` (stopped in tearDown).
    package func startLoad(_ hello: HelloProcess, keepAlive: Int, perRequest: Int) -> LoadRunner {
        startLoad(port: hello.port, keepAlive: keepAlive, perRequest: perRequest)
    }

    /// Starts load against any port (stopped in tearDown); see `LoadRunner` for `portClosed`.
    package func startLoad(port: UInt16, keepAlive: Int, perRequest: Int, portClosed: (@Sendable () -> Bool)? = nil) -> LoadRunner {
        let load = LoadRunner(port: port, keepAlive: keepAlive, perRequest: perRequest, portClosed: portClosed)
        loads.append(load)
        load.start()
        return load
    }

    /// Writes `text` to `path` with `mode` exactly (whatever the umask), replacing it by rename.
    package func write(_ text: String, to path: String, mode: mode_t) throws {
        try HelloProcess.write(Array(text.utf8), to: URL(fileURLWithPath: path), style: .rename, mode: mode)
    }

    // MARK: Waiting for answers

    /// Waits (bounded) until `GET /hello` on `port` answers 200 with a pid and returns the answer.
    package func waitUntilServing(port: UInt16, master: TestProcess, timeout: TimeInterval = 30,
                                  file: StaticString = #filePath, line: UInt = #line) throws -> HTTPResponse {
        let deadline = Date().addingTimeInterval(timeout)
        var last = "no attempt"
        while Date() < deadline {
            if let status = master.reap() {
                XCTFail("the master exited (\(status)) before serving", file: file, line: line)
                throw TestError("master exited")
            }
            switch httpGetOnce(port: port, timeout: 5) {
            case .success(let response) where response.status == 200 && response.pid != nil:
                master.track(response.pid!)
                return response
            case .success(let response): last = "status \(response.status): \(response.bodyText.prefix(200))"
            case .failure(let error): last = error.description
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
        XCTFail("no 200 from /hello on port \(port) within \(timeout) s (last: \(last))", file: file, line: line)
        throw TestError("not serving")
    }

    /// The pid in a fresh `/hello` answer, after a bounded wait until it is not `old`.
    package func waitForNewPid(port: UInt16, master: TestProcess, old: pid_t, timeout: TimeInterval = 20) -> pid_t? {
        var found: pid_t?
        poll(timeout: timeout, interval: 0.05) {
            if case .success(let response) = httpGetOnce(port: port, timeout: 5), response.status == 200,
               let pid = response.pid, pid != old {
                found = pid
                return true
            }
            return false
        }
        if let found { master.track(found) }
        return found
    }

    /// Waits until the load has seen its first answering worker.
    package func firstPid(_ load: LoadRunner, file: StaticString = #filePath, line: UInt = #line) throws -> pid_t {
        guard let pid = load.waitForPid(notIn: [], timeout: 30) else {
            XCTFail("no successful answer under load within 30 s: \(load.stats.snapshot)", file: file, line: line)
            throw TestError("no first pid")
        }
        return pid
    }

    /// Waits (bounded) until `master` has exactly the given children; fails otherwise.
    @discardableResult
    package func waitForChildren(_ master: TestProcess, toBe expected: [pid_t]? = nil, count: Int? = nil,
                                 timeout: TimeInterval, _ what: String,
                                 file: StaticString = #filePath, line: UInt = #line) -> [pid_t] {
        var kids: [pid_t] = []
        let ok = poll(timeout: timeout, interval: 0.05) {
            kids = master.children()
            if let expected { return kids == expected.sorted() }
            if let count { return kids.count == count }
            return true
        }
        if !ok {
            XCTFail("\(what): master \(master.pid) children are \(kids), expected \(expected.map { "\($0)" } ?? "\(count ?? -1) children") after \(timeout) s",
                    file: file, line: line)
        }
        return kids
    }

    /// Starts load against `hello` and waits (bounded) for its first answering worker, which must
    /// then be the master's only child; `what` names the moment in a failure.
    package func startLoadOnOneWorker(_ hello: HelloProcess, keepAlive: Int, perRequest: Int, _ what: String,
                                      file: StaticString = #filePath, line: UInt = #line) throws -> (load: LoadRunner, worker: pid_t) {
        let load = startLoad(hello, keepAlive: keepAlive, perRequest: perRequest)
        let worker = try firstPid(load, file: file, line: line)
        waitForChildren(hello, toBe: [worker], timeout: 10, what, file: file, line: line)
        return (load, worker)
    }

    /// SIGTERM to the master: it must exit 0 within `timeout` s; then none of `workers` may be
    /// alive 10 s later.
    package func assertStopsCleanly(_ hello: HelloProcess, timeout: TimeInterval, workers: Set<pid_t>? = nil,
                                    file: StaticString = #filePath, line: UInt = #line) {
        let status = hello.stop(timeout: timeout)
        XCTAssertEqual(status, .exited(0), "master after SIGTERM: \(status.map { "\($0)" } ?? "did not exit within \(Int(timeout)) s")",
                       file: file, line: line)
        guard let workers else { return }
        var lingering: [pid_t] = []
        poll(timeout: 10) {
            lingering = workers.filter { Proc.isAlive($0) }.sorted()
            return lingering.isEmpty
        }
        XCTAssertEqual(lingering, [], "worker pids still alive after the master exited", file: file, line: line)
    }

    /// Upgrades by SIGHUP `upgrades` times under `load`, each time waiting (bounded) for a new
    /// worker pid, a child of the master; then lets the old generations drain, stops the load and
    /// checks what every such test asserts: no failed or stuck request, one pid per generation,
    /// one generation left. Returns the load's report and the surviving children.
    package func upgradeBySIGHUP(_ hello: HelloProcess, under load: LoadRunner, times upgrades: Int,
                                 file: StaticString = #filePath, line: UInt = #line) -> (report: LoadReport, survivors: [pid_t]) {
        for upgrade in 1...upgrades {
            let known = load.stats.snapshot.pids
            hello.signal(SIGHUP)
            guard let newPid = load.waitForPid(notIn: known, timeout: 40) else {
                XCTFail("upgrade \(upgrade): no new worker pid answered within 40 s; \(load.stats.snapshot)", file: file, line: line)
                break
            }
            hello.track(newPid)
            XCTAssertEqual(Proc.stat(newPid)?.ppid, hello.masterPid, "upgrade \(upgrade): new worker \(newPid) is not a child of the master",
                           file: file, line: line)
            Thread.sleep(forTimeInterval: 0.5)
        }
        // Old generations drain and exit while the load goes on.
        let survivors = waitForChildren(hello, count: 1, timeout: 45, "after \(upgrades) upgrades", file: file, line: line)
        let report = load.stop()
        hello.track(report.pids)
        print("load during \(upgrades) upgrades of \(hello.executable.lastPathComponent): \(report)")
        XCTAssertEqual(report.failures, 0, "failed requests: \(report)", file: file, line: line)
        XCTAssertEqual(report.stuckClients, 0, "\(report)", file: file, line: line)
        XCTAssertGreaterThan(report.successes, 0, file: file, line: line)
        XCTAssertGreaterThanOrEqual(report.pids.count, upgrades + 1, "distinct worker pids: \(report)", file: file, line: line)
        XCTAssertEqual(survivors.count, 1, file: file, line: line)
        return (report, survivors)
    }
}
#endif
