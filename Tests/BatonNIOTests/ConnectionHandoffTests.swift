import Foundation
import Logging
import NIOCore
import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import BatonNIO

/// The hand-over's inbox when the next generation dies: connections wait a grace for new
/// orders (the drain called off, or a newer inbox) instead of closing at once.
final class ConnectionHandoffTests: XCTestCase {
    private func pair() -> (sender: Int32, receiver: Int32) {
        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds), 0)
        return (fds[0], fds[1])
    }

    /// A hand-over whose next generation has died (its end of the inbox is closed).
    private func handoffToADeadSuccessor(grace: TimeAmount) -> ConnectionHandoff {
        let dead = pair()
        close(dead.receiver)
        return ConnectionHandoff(inbox: dead.sender, listenerNames: ["http"], handingOver: [0], window: .seconds(10),
                                 peerGoneGrace: grace, logger: Logger(label: "test"))
    }

    private func connection() -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        return fd
    }

    func testAGoneSuccessorIsWaitedForThenTheConnectionsClose() throws {
        let handoff = handoffToADeadSuccessor(grace: .milliseconds(200))
        defer { handoff.close() }
        let fd = connection()
        defer { close(fd) }
        guard case .full = handoff.handOver(fd, listener: 0) else { return XCTFail("a gone successor must be waited for") }
        XCTAssertTrue(handoff.takes(listener: 0), "still waiting for orders")
        guard case .full = handoff.handOver(fd, listener: 0) else { return XCTFail("within the grace") }
        XCTAssertTrue(poll(timeout: 5) {
            if case .closed = handoff.handOver(fd, listener: 0) { return true } else { return false }
        }, "after the grace the connections close gracefully")
        XCTAssertFalse(handoff.takes(listener: 0))
    }

    func testANewerInboxWithinTheGraceTakesTheConnections() throws {
        let handoff = handoffToADeadSuccessor(grace: .seconds(30))
        defer { handoff.close() }
        let fd = connection()
        defer { close(fd) }
        guard case .full = handoff.handOver(fd, listener: 0) else { return XCTFail("a gone successor must be waited for") }
        let newer = pair()
        defer { close(newer.receiver) }
        handoff.retarget(to: newer.sender)
        guard case .sent = handoff.handOver(fd, listener: 0) else { return XCTFail("the newer inbox takes it") }
        XCTAssertEqual(handoff.counts.handedOver, 1)
    }

    private func poll(timeout: TimeInterval, _ condition: () -> Bool) -> Bool {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }
}
