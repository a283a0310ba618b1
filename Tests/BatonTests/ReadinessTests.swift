import Foundation
import NIOConcurrencyHelpers
import XCTest
@testable import Baton

final class ReadinessTests: XCTestCase {
    func testParsesNotifyMessages() {
        let message = NotifyMessage(parsing: "READY=1\nSTATUS=serving on :8080\nnonsense\nSTATUS=again")
        XCTAssertTrue(message.isReady)
        XCTAssertFalse(message.isStopping)
        XCTAssertEqual(message.status, "again", "the last assignment wins")
        XCTAssertEqual(message.fields.count, 3)
    }

    /// The master's socket receives a message from another process and knows its pid from the
    /// kernel (SCM_CREDENTIALS), not from anything the sender wrote.
    /// `BATON_CONNECTIONS`: open connections by kind; anything malformed is no report at all.
    func testParsesConnectionCounts() {
        XCTAssertEqual(NotifyMessage(parsing: "BATON_CONNECTIONS=http1:10,ws:2000").connections, ["http1": 10, "ws": 2000])
        XCTAssertEqual(NotifyMessage(parsing: "BATON_CONNECTIONS=").connections, [:], "none open")
        XCTAssertNil(NotifyMessage(parsing: "READY=1").connections)
        for bad in ["http1", "http1:", ":3", "http1:-1", "HTTP1:3", "http1:3,,ws:1", "http1:3,http1:4", "h t:1", "ws:1000000001",
                    String(repeating: "a", count: 17) + ":1", (0..<17).map { "k\($0):1" }.joined(separator: ",")] {
            XCTAssertNil(NotifyMessage(parsing: "BATON_CONNECTIONS=\(bad)").connections, bad)
        }
    }

    func testMessageFromAChildCarriesTheChildsPid() throws {
        let received = NIOLockedValueBox<[(pid_t, NotifyMessage)]>([])
        let socket = try NotifySocket { pid, message in received.withLockedValue { $0.append((pid, message)) } }
        defer { socket.close() }

        let sender = Process()
        sender.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        sender.arguments = ["python3", "-c", """
            import os, socket
            path = os.environ["NOTIFY_SOCKET"]
            addr = "\\0" + path[1:] if path.startswith("@") else path
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s.sendto(b"READY=1\\nSTATUS=child ready\\nMAINPID=1", addr)
            """]
        sender.environment = ["NOTIFY_SOCKET": socket.path, "PATH": "/usr/bin:/bin"]
        try sender.run()
        sender.waitUntilExit()
        XCTAssertEqual(sender.terminationStatus, 0)

        try waitFor { !received.withLockedValue { $0.isEmpty } }
        let (pid, message) = received.withLockedValue { $0[0] }
        XCTAssertEqual(pid, sender.processIdentifier)
        XCTAssertTrue(message.isReady)
        XCTAssertEqual(message.status, "child ready")
    }

    func testWorkerSideSendsReadyAndStopping() throws {
        let received = NIOLockedValueBox<[(pid_t, NotifyMessage)]>([])
        let socket = try NotifySocket { pid, message in received.withLockedValue { $0.append((pid, message)) } }
        defer { socket.close() }
        let worker = BatonWorker(generation: 1, version: "1", masterPID: getpid(), listeners: [], notifySocket: socket.path)
        try worker.ready(status: "up")
        try worker.stopping()
        try waitFor { received.withLockedValue { $0.count } == 2 }
        let messages = received.withLockedValue { $0 }
        XCTAssertEqual(messages[0].0, getpid())
        XCTAssertEqual(messages[0].1.text, "READY=1\nSTATUS=up")
        XCTAssertEqual(messages[1].1.text, "STOPPING=1")
    }

    func testNoNotifySocketMeansNothingToSend() throws {
        XCTAssertFalse(try SDNotify.send(NotifyMessage([("READY", "1")]), to: nil))
        XCTAssertThrowsError(try SDNotify.send(NotifyMessage([("READY", "1")]), to: "@baton-test-nobody-listens-\(getpid())"))
    }
}

/// Polls `condition` every 10 ms for at most `seconds`.
func waitFor(seconds: Double = 10, _ condition: () -> Bool, file: StaticString = #filePath, line: UInt = #line) throws {
    let deadline = Date().addingTimeInterval(seconds)
    while !condition() {
        guard Date() < deadline else {
            XCTFail("condition not met within \(seconds) s", file: file, line: line)
            throw CancellationError()
        }
        usleep(10_000)
    }
}
