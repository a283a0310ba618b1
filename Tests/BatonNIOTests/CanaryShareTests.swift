import Baton
@testable import BatonNIO
import Logging
import NIOCore
import NIOHTTP1
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The serving generation's side of a canary upgrade: connections moved at their boundary (or
/// kept), new connections split exactly, and every answer counted.
final class CanaryShareTests: DrainTestCase {
    private var pair: [Int32] = [-1, -1]
    private var inbox: [Int32] = [-1, -1]

    override func setUpWithError() throws {
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair), 0)
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &inbox), 0)
        try makeChannel(socketFD: pair[0], listener: 0)
    }

    override func tearDown() {
        super.tearDown()
        for fd in pair + [inbox[1]] { close(fd) }
    }

    private func makeHandoff() -> ConnectionHandoff {
        ConnectionHandoff(inbox: inbox[0], listenerNames: ["a"], handingOver: [0], window: .seconds(60), logger: Logger(label: "test"))
    }

    func testASharedConnectionMovesAfterItsResponseWithoutBeingToldToClose() throws {
        let handoff = makeHandoff()
        defer { handoff.close() }
        try request()
        channel.pipeline.fireUserInboundEventTriggered(ShareConnectionEvent(handoff: handoff))
        XCTAssertEqual(handoff.counts.handedOver, 0, "a request in flight is answered here first")
        XCTAssertNil(try respond().headers.first(name: "connection"), "no Connection: close: the connection lives on in the canary")
        XCTAssertEqual(handoff.counts.handedOver, 1)
        XCTAssertFalse(channel.isActive, "this process's descriptor is closed")
        var byte: UInt8 = 0
        XCTAssertGreaterThan(recv(inbox[1], &byte, 1, Int32(MSG_DONTWAIT)), 0, "the canary's inbox has it")
    }

    func testAConnectionThatCannotMoveStaysAndIsServedAsBefore() throws {
        let handoff = makeHandoff()
        handoff.close()  // the share ended (a rollback) before this connection's moment
        channel.pipeline.fireUserInboundEventTriggered(ShareConnectionEvent(handoff: handoff))
        try request()
        XCTAssertNil(try respond().headers.first(name: "connection"))
        loop.advanceTime(by: .seconds(30))
        XCTAssertTrue(channel.isActive, "not draining: an idle connection stays open")
    }

    func testADrainAfterAShareSendsTheConnectionWhereTheDrainSays() throws {
        let share = makeHandoff()
        defer { share.close() }
        try request()
        channel.pipeline.fireUserInboundEventTriggered(ShareConnectionEvent(handoff: share))
        channel.pipeline.fireUserInboundEventTriggered(DrainConnectionEvent())  // promoted elsewhere: no hand-over here
        XCTAssertEqual(try respond().headers["connection"], ["close"])
        XCTAssertEqual(share.counts.handedOver, 0)
    }

    func testEveryAnswerIsCounted() throws {
        let before = RequestRecorder.shared.snapshot
        try request()
        channel.write(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: .serviceUnavailable)), promise: nil)
        loop.advanceTime(by: .milliseconds(3))
        try channel.writeAndFlush(HTTPServerResponsePart.end(nil)).wait()
        let counted = RequestRecorder.shared.snapshot.since(before)
        XCTAssertEqual(counted.requests, 1)
        XCTAssertEqual(counted.serverErrors, 1)
        XCTAssertEqual(counted.buckets, [RequestStats.bucket(microseconds: 3_000): 1])
    }

    func testNewConnectionsAreSplitExactlyAndEvenly() throws {
        let handoff = makeHandoff()
        defer { handoff.close() }
        let share = TrafficShare(percent: 10, handoff: handoff)
        var passed: [Int] = []
        for index in 0..<100 {
            var fds: [Int32] = [-1, -1]
            XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds), 0)
            close(fds[1])
            let kept = share.split([fds[0]], listener: 0)
            if kept.isEmpty { passed.append(index) } else { kept.forEach { close($0) } }
        }
        XCTAssertEqual(passed, [9, 19, 29, 39, 49, 59, 69, 79, 89, 99])
        XCTAssertEqual(handoff.counts.handedOver, 10)
    }

    func testAConnectionThatCouldNotBePassedIsMadeUpForByTheNext() throws {
        // An inbox whose queue is full: every send fails with EAGAIN until the canary reads.
        var full: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &full), 0)
        defer { close(full[1]) }
        let handoff = ConnectionHandoff(inbox: full[0], listenerNames: ["a"], handingOver: [0], window: .seconds(60), logger: Logger(label: "test"))
        defer { handoff.close() }
        var filler = [UInt8](repeating: 0, count: 60_000)
        while filler.withUnsafeBytes({ send(full[0], $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }) > 0 {}
        filler = []
        let share = TrafficShare(percent: 50, handoff: handoff)
        func accept() -> Bool {  // true when passed
            var fds: [Int32] = [-1, -1]
            XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds), 0)
            close(fds[1])
            let kept = share.split([fds[0]], listener: 0)
            kept.forEach { close($0) }
            return kept.isEmpty
        }
        XCTAssertEqual((0..<4).map { _ in accept() }, [false, false, false, false], "the queue is full: all served here")
        var drain = [UInt8](repeating: 0, count: 65_536)
        while recv(full[1], &drain, drain.count, Int32(MSG_DONTWAIT)) > 0 {}
        XCTAssertEqual((0..<4).map { _ in accept() }, [true, true, true, true], "the two owed go first, then one in two")
        XCTAssertEqual(handoff.counts.handedOver, 4)
    }
}
