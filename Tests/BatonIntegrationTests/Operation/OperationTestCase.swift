#if os(Linux)
import Foundation
import Glibc
import XCTest

/// Base class: gives each test a fresh temp directory (the working directory of what it starts,
/// so each master's control socket is its own), kills every process and load it started in
/// tearDown, and attaches the logs of a failing test.
class OperationTestCase: XCTestCase {
    private(set) var directory = ""
    private var processes: [TestProcess] = []
    private var loads: [LoadRunner] = []
    private var failed = false

    override func setUpWithError() throws {
        try super.setUpWithError()
        // A write to a socket the server closed must be an error, not the end of the test run.
        Glibc.signal(SIGPIPE, SIG_IGN)
        failed = false
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("baton-op-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        chmod(folder.path, 0o755)
        directory = folder.path
    }

    override func tearDown() {
        for load in loads { load.stop() }
        for process in processes { process.killAll() }
        if failed {
            for process in processes {
                super.recordFailure(withDescription: "log of \(process.command.joined(separator: " ")) (pid \(process.pid), kept in \(directory)):\n\(process.logExcerpt())",
                                    inFile: #filePath, atLine: #line, expected: true)
            }
        } else {
            try? FileManager.default.removeItem(atPath: directory)
        }
        processes = []
        loads = []
        super.tearDown()
    }

    override func recordFailure(withDescription description: String, inFile filePath: String, atLine lineNumber: Int, expected: Bool) {
        failed = true
        super.recordFailure(withDescription: description, inFile: filePath, atLine: lineNumber, expected: expected)
    }

    // MARK: Starting things

    /// Starts a long-running process (killed in tearDown) with its output in `logName`.
    func start(_ executable: String, _ arguments: [String], in folder: String? = nil, environment: [String: String] = cleanEnvironment(),
               logName: String = "master.log") throws -> TestProcess {
        let process = try TestProcess(executable, arguments, directory: folder ?? directory, environment: environment,
                                      log: "\(directory)/\(logName)")
        processes.append(process)
        return process
    }

    /// `baton ARGS` run to completion in `folder` (default: the test's directory).
    func baton(_ arguments: [String], in folder: String? = nil, timeout: TimeInterval = 60,
               whileWaiting: () -> Void = {}) throws -> CommandResult {
        try runCommand(try Locations.product("baton"), arguments, directory: folder ?? directory, timeout: timeout,
                       whileWaiting: whileWaiting)
    }

    /// Starts load against `port` (stopped in tearDown).
    func startLoad(port: UInt16, keepAlive: Int, perRequest: Int) -> LoadRunner {
        let load = LoadRunner(port: port, keepAlive: keepAlive, perRequest: perRequest)
        loads.append(load)
        load.start()
        return load
    }

    /// Writes `text` to `path` with `mode` exactly (whatever the umask), replacing it by rename.
    func write(_ text: String, to path: String, mode: mode_t) throws {
        let temporary = path + ".tmp-\(UUID().uuidString.prefix(6))"
        try Data(text.utf8).write(to: URL(fileURLWithPath: temporary))
        guard chmod(temporary, mode) == 0, rename(temporary, path) == 0 else {
            throw OperationError("installing \(path): \(String(cString: strerror(errno)))")
        }
    }

    // MARK: Waiting for answers

    /// Waits (bounded) until `GET /hello` on `port` answers 200 with a pid and returns the answer.
    func waitUntilServing(port: UInt16, master: TestProcess, timeout: TimeInterval = 30,
                          file: StaticString = #filePath, line: UInt = #line) throws -> HTTPResponse {
        let deadline = Date().addingTimeInterval(timeout)
        var last = "no attempt"
        while Date() < deadline {
            if let status = master.reap() {
                XCTFail("the master exited (\(status)) before serving", file: file, line: line)
                throw OperationError("master exited")
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
        throw OperationError("not serving")
    }

    /// The pid in a fresh `/hello` answer, after a bounded wait until it is not `old`.
    func waitForNewPid(port: UInt16, master: TestProcess, old: pid_t, timeout: TimeInterval = 20) -> pid_t? {
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
}
#endif
