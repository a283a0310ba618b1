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
