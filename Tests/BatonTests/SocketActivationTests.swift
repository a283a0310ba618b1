import XCTest
@testable import Baton

final class SocketActivationTests: XCTestCase {
    func testNothingPassedMeansNil() throws {
        XCTAssertNil(try SocketActivation.adoptListeners(environment: [:], unsetVariables: false))
    }

    func testVariablesMeantForAnotherProcessAreIgnored() throws {
        let env = ["LISTEN_PID": String(getpid() + 1), "LISTEN_FDS": "1"]
        XCTAssertNil(try SocketActivation.adoptListeners(environment: env, unsetVariables: false))
    }

    func testMalformedVariablesAreErrors() {
        XCTAssertThrowsError(try SocketActivation.adoptListeners(environment: ["LISTEN_PID": "x", "LISTEN_FDS": "1"], unsetVariables: false))
        XCTAssertThrowsError(try SocketActivation.adoptListeners(environment: ["LISTEN_PID": String(getpid()), "LISTEN_FDS": "-2"], unsetVariables: false))
    }

    func testAFileThatIsNotAListeningSocketIsRefused() throws {
        // fd 3.. of the test process are whatever the runner opened: check the validation directly.
        let fd = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(fd) }
        XCTAssertThrowsError(try SocketActivation.checkListeningSocket(fd)) { XCTAssertTrue("\($0)".contains("not a socket")) }
        let unbound = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(unbound) }
        XCTAssertThrowsError(try SocketActivation.checkListeningSocket(unbound)) { XCTAssertTrue("\($0)".contains("not a listening socket")) }
        let listener = try Listener.bind(.tcp(host: "127.0.0.1", port: 0))
        defer { listener.close() }
        XCTAssertNoThrow(try SocketActivation.checkListeningSocket(listener.fd))
    }

    func testWorkerEnvironmentDropsTheMastersOwnActivationAndAddsTheProtocol() {
        let inherited = ["PATH": "/usr/bin", "LISTEN_FDS": "9", "LISTEN_PID": "1", "NOTIFY_SOCKET": "/run/systemd/notify",
                         "BATON_GENERATION": "7", "WATCHDOG_USEC": "5", "HOME": "/root"]
        let listeners = [Listener(fd: 10, name: "http"), Listener(fd: 11, name: "admin:x")]
        let env = WorkerEnvironment.make(inherited: inherited, plan: LaunchPlan(executable: "/bin/true", version: "2", environment: ["EXTRA": "1"]),
                                         listeners: listeners, generation: 3, notifySocketPath: "@baton/1/2", masterPID: 42)
        XCTAssertEqual(env["PATH"], "/usr/bin")
        XCTAssertEqual(env["HOME"], "/root")
        XCTAssertEqual(env["LISTEN_FDS"], "2")
        XCTAssertEqual(env["LISTEN_FDNAMES"], "http:admin_x")
        XCTAssertNil(env["LISTEN_PID"], "only the child knows its pid: the spawn shim sets it")
        XCTAssertEqual(env["NOTIFY_SOCKET"], "@baton/1/2", "never systemd's socket")
        XCTAssertEqual(env["BATON_GENERATION"], "3")
        XCTAssertEqual(env["BATON_VERSION"], "2")
        XCTAssertEqual(env["BATON_MASTER_PID"], "42")
        XCTAssertNil(env["WATCHDOG_USEC"])
        XCTAssertEqual(env["EXTRA"], "1")
    }
}
