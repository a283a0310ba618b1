#if os(Linux)
import Foundation
import Glibc
import XCTest

/// A worker that dies by itself is replaced; the listener stays open meanwhile.
final class RestartTests: IntegrationTestCase {
    func testWorkerThatDiesIsRestartedAndClientsQueueMeanwhile() throws {
        let hello = try startHello()
        let old = try XCTUnwrap(hello.servingPid())
        waitForChildren(hello, toBe: [old], timeout: 10, "before the crash")

        kill(old, SIGKILL)
        // No generation serves for a moment: a new connection waits in the accept queue (the
        // master keeps the socket open) instead of being refused, and is answered by the new one.
        let answer = hello.get("/hello", timeout: 15)
        guard case .success(let response) = answer else { return XCTFail("request during the restart failed: \(answer)") }
        XCTAssertEqual(response.status, 200)
        let new = try XCTUnwrap(response.pid)
        XCTAssertNotEqual(new, old)
        hello.track(new)
        XCTAssertEqual(Proc.stat(new)?.ppid, hello.masterPid)
        XCTAssertGreaterThanOrEqual(hello.logCount("exited unexpectedly with signal 9"), 1, hello.logExcerpt())
        XCTAssertGreaterThanOrEqual(hello.logCount("starting (restart)"), 1, hello.logExcerpt())
        XCTAssertEqual(hello.stop(timeout: 40), .exited(0))
    }
}
#endif
