#if os(Linux)
import Foundation
import Glibc
import XCTest

/// Base class: owns the hello processes and load runners a test starts, stops and kills them in
/// tearDown (also after a failure), and attaches the hello log to a failing test.
class IntegrationTestCase: XCTestCase {
    private var hellos: [HelloProcess] = []
    private var loads: [LoadRunner] = []
    private var hadFailure = false

    override func setUp() {
        super.setUp()
        // A write to a socket the server closed must be an error, not a process kill.
        Glibc.signal(SIGPIPE, SIG_IGN)
        hellos = []
        loads = []
        hadFailure = false
    }

    override func tearDown() {
        for load in loads { load.stop() }
        for hello in hellos { hello.killAll() }
        if hadFailure {
            for hello in hellos {
                super.recordFailure(
                    withDescription: "hello log (kept at \(hello.logURL.path)), master pid \(hello.masterPid), port \(hello.port):\n\(hello.logExcerpt())",
                    inFile: #filePath, atLine: #line, expected: true)
            }
        }
        for hello in hellos { hello.cleanUp(keepLog: hadFailure) }
        hellos = []
        loads = []
        super.tearDown()
    }

    override func recordFailure(withDescription description: String, inFile filePath: String, atLine lineNumber: Int, expected: Bool) {
        hadFailure = true
        super.recordFailure(withDescription: description, inFile: filePath, atLine: lineNumber, expected: expected)
    }

    /// Starts a hello master (cleaned up in tearDown) and waits until it serves; see
    /// `HelloProcess.init` for `launcher` and `binary`.
    func startHello(_ extraArguments: [String] = [], mode: HelloProcess.Mode = .port, launcher: [String] = [],
                    binary: String = "hello") throws -> HelloProcess {
        let hello = try HelloProcess(extraArguments: extraArguments, mode: mode, launcher: launcher, binary: binary)
        hellos.append(hello)
        return hello
    }

    /// Starts load against `hello` (stopped in tearDown).
    func startLoad(_ hello: HelloProcess, keepAlive: Int, perRequest: Int) -> LoadRunner {
        let load = LoadRunner(port: hello.port, keepAlive: keepAlive, perRequest: perRequest)
        loads.append(load)
        load.start()
        return load
    }

    /// Starts load against any port (stopped in tearDown); see `LoadRunner` for `portClosed`.
    func startLoad(port: UInt16, keepAlive: Int, perRequest: Int, portClosed: (@Sendable () -> Bool)? = nil) -> LoadRunner {
        let load = LoadRunner(port: port, keepAlive: keepAlive, perRequest: perRequest, portClosed: portClosed)
        loads.append(load)
        load.start()
        return load
    }

    /// Waits until the load has seen its first answering worker.
    func firstPid(_ load: LoadRunner, file: StaticString = #filePath, line: UInt = #line) throws -> pid_t {
        guard let pid = load.waitForPid(notIn: [], timeout: 30) else {
            XCTFail("no successful answer under load within 30 s: \(load.stats.snapshot)", file: file, line: line)
            throw HelloError("no first pid")
        }
        return pid
    }

    /// Upgrades by SIGHUP `upgrades` times under `load`, each time waiting (bounded) for a new
    /// worker pid, a child of the master; then lets the old generations drain, stops the load and
    /// checks what every such test asserts: no failed or stuck request, one pid per generation,
    /// one generation left. Returns the load's report and the surviving children.
    func upgradeBySIGHUP(_ hello: HelloProcess, under load: LoadRunner, times upgrades: Int,
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

    /// Waits (bounded) until the master has exactly the given children; fails otherwise.
    @discardableResult
    func waitForChildren(_ hello: HelloProcess, toBe expected: [pid_t]? = nil, count: Int? = nil,
                         timeout: TimeInterval, _ what: String,
                         file: StaticString = #filePath, line: UInt = #line) -> [pid_t] {
        var kids: [pid_t] = []
        let ok = poll(timeout: timeout, interval: 0.05) {
            kids = hello.children()
            if let expected { return kids == expected.sorted() }
            if let count { return kids.count == count }
            return true
        }
        if !ok {
            XCTFail("\(what): master \(hello.masterPid) children are \(kids), expected \(expected.map { "\($0)" } ?? "\(count ?? -1) children") after \(timeout) s",
                    file: file, line: line)
        }
        return kids
    }
}
#endif
