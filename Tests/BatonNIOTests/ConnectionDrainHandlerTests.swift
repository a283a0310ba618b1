import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import BatonNIO

/// An in-memory connection with a virtual clock, requests written as parsed parts (the socket
/// handler only notes that input came).
class DrainTestCase: XCTestCase {
    var loop: EmbeddedEventLoop!
    var channel: EmbeddedChannel!
    /// Requests are written as bytes (through a real decoder) rather than as parts.
    private var rawRequests = false

    /// Builds the pipeline; with `socketFD`, a ``ConnectionSocketHandler`` on that descriptor first.
    func makeChannel(socketFD: Int32? = nil, listener: Int? = nil) throws {
        loop = EmbeddedEventLoop()
        channel = EmbeddedChannel(loop: loop)
        if let socketFD {
            // The socket end reads bytes: a real decoder turns them into requests.
            try channel.pipeline.syncOperations.addHandler(ConnectionSocketHandler(fd: socketFD, listener: listener))
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(HTTPRequestDecoder()))
            rawRequests = true
        }
        try channel.pipeline.syncOperations.addHandler(ConnectionDrainHandler(idleGrace: .milliseconds(250)))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 80)).wait()
    }

    override func tearDown() {
        _ = try? channel.finish()
    }

    func request(_ version: HTTPVersion = .http1_1, headers: HTTPHeaders = [:]) throws {
        if rawRequests {
            let lines = headers.map { "\($0.name): \($0.value)\r\n" }.joined()
            try channel.writeInbound(ByteBuffer(string: "GET /hello HTTP/\(version.major).\(version.minor)\r\nHost: a\r\n\(lines)\r\n"))
        } else {
            try channel.writeInbound(HTTPServerRequestPart.head(HTTPRequestHead(version: version, method: .GET, uri: "/hello", headers: headers)))
            try channel.writeInbound(HTTPServerRequestPart.end(nil))
        }
        while try channel.readInbound(as: HTTPServerRequestPart.self) != nil {}
    }

    /// Writes a response and returns the head as it left the handler.
    func respond(headers: HTTPHeaders = [:]) throws -> HTTPResponseHead {
        channel.write(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers)), promise: nil)
        try channel.writeAndFlush(HTTPServerResponsePart.end(nil)).wait()
        guard case .head(let head) = try channel.readOutbound(as: HTTPServerResponsePart.self) else {
            XCTFail("no response head")
            return HTTPResponseHead(version: .http1_1, status: .imATeapot)
        }
        _ = try channel.readOutbound(as: HTTPServerResponsePart.self)
        return head
    }

    func drain() {
        channel.pipeline.fireUserInboundEventTriggered(DrainConnectionEvent())
    }
}

/// The drain rules and HTTP/1 connection semantics.
final class ConnectionDrainHandlerTests: DrainTestCase {
    override func setUpWithError() throws {
        try makeChannel()
    }

    func testKeepAliveIsUntouchedWhileServing() throws {
        try request()
        let head = try respond()
        XCTAssertFalse(head.headers.contains(name: "connection"))
        XCTAssertTrue(channel.isActive)
    }

    func testRequestInFlightAtDrainGetsConnectionCloseThenCloses() throws {
        try channel.writeInbound(HTTPServerRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")))
        drain()
        loop.advanceTime(by: .seconds(1))
        XCTAssertTrue(channel.isActive, "a request in flight is answered, not cut off")
        let head = try respond()
        XCTAssertEqual(head.headers["connection"], ["close"])
        XCTAssertFalse(channel.isActive)
    }

    func testIdleConnectionClosesAfterTheGrace() throws {
        try request()
        _ = try respond()
        drain()
        loop.advanceTime(by: .milliseconds(200))
        XCTAssertTrue(channel.isActive)
        loop.advanceTime(by: .milliseconds(60))
        XCTAssertFalse(channel.isActive)
    }

    func testADrainCalledOffKeepsTheConnection() throws {
        try request()
        _ = try respond()
        drain()
        loop.advanceTime(by: .milliseconds(200))
        channel.pipeline.fireUserInboundEventTriggered(ResumeConnectionEvent())
        loop.advanceTime(by: .seconds(5))
        XCTAssertTrue(channel.isActive, "the idle check of the drain is cancelled")
        try request()
        XCTAssertFalse(try respond().headers.contains(name: "connection"), "served as before the drain")
        XCTAssertTrue(channel.isActive)
        drain()
        try request()
        XCTAssertEqual(try respond().headers["connection"], ["close"], "a later drain applies again")
    }

    func testRequestArrivingInTheGraceIsServedWithConnectionClose() throws {
        drain()
        loop.advanceTime(by: .milliseconds(100))
        try request()
        loop.advanceTime(by: .seconds(1))
        XCTAssertTrue(channel.isActive, "the grace timer must not cut off a request being served")
        let head = try respond()
        XCTAssertEqual(head.headers["connection"], ["close"])
        XCTAssertFalse(channel.isActive)
    }

    func testResponseStartedBeforeDrainLeavesRoomForOneMoreRequest() throws {
        try request()
        channel.write(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: .ok)), promise: nil)
        drain()
        try channel.writeAndFlush(HTTPServerResponsePart.end(nil)).wait()
        guard case .head(let first) = try channel.readOutbound(as: HTTPServerResponsePart.self) else { return XCTFail("no head") }
        XCTAssertFalse(first.headers.contains(name: "connection"), "already on its way when the drain began")
        _ = try channel.readOutbound(as: HTTPServerResponsePart.self)
        XCTAssertTrue(channel.isActive, "the client was not told to close: it may send again")
        try request()
        XCTAssertEqual(try respond().headers["connection"], ["close"])
        XCTAssertFalse(channel.isActive)
    }

    func testClientConnectionCloseIsEchoedAndHonoured() throws {
        try request(headers: ["Connection": "close"])
        XCTAssertEqual(try respond().headers["connection"], ["close"])
        XCTAssertFalse(channel.isActive)
    }

    func testHTTP10WithoutKeepAliveIsClosed() throws {
        try request(.http1_0)
        XCTAssertEqual(try respond().headers["connection"], ["close"])
        XCTAssertFalse(channel.isActive)
    }

    func testHTTP10KeepAliveIsConfirmed() throws {
        try request(.http1_0, headers: ["Connection": "keep-alive"])
        XCTAssertEqual(try respond().headers["connection"], ["keep-alive"])
        XCTAssertTrue(channel.isActive)
    }
}

/// The drain rules that depend on the socket: pending input in the kernel, a request that is
/// still arriving, and a client's own rhythm. The descriptor is one end of a socket pair, so
/// FIONREAD is real; the clock is the embedded loop's.
final class ConnectionActivityDrainTests: DrainTestCase {
    private var pair: [Int32] = [-1, -1]

    override func setUpWithError() throws {
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair), 0)
        try makeChannel(socketFD: pair[0])
    }

    override func tearDown() {
        super.tearDown()
        for fd in pair { close(fd) }
    }

    func testRequestWaitingUnreadInTheKernelKeepsTheConnectionOpen() throws {
        try request()
        _ = try respond()
        // The client's next request reached the socket; the busy loop has not read it yet.
        XCTAssertEqual(write(pair[1], "GET / HTTP/1.1\r\n\r\n", 18), 18)
        drain()
        loop.advanceTime(by: .seconds(5))
        XCTAssertTrue(channel.isActive, "closing now would reset the unread request")
        // The loop reads it at last: it is answered, with Connection: close, then closed.
        var sink = [UInt8](repeating: 0, count: 64)
        _ = read(pair[0], &sink, sink.count)
        try request()
        XCTAssertEqual(try respond().headers["connection"], ["close"])
        XCTAssertFalse(channel.isActive)
    }

    func testRequestWaitingInTheKernelAtTheHandOverIsAnsweredHereFirst() throws {
        _ = try? channel.finish()
        try makeChannel(socketFD: pair[0], listener: 0)
        try request()
        _ = try respond()
        var inbox: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &inbox), 0)
        defer { close(inbox[1]) }
        let handoff = ConnectionHandoff(inbox: inbox[0], listenerNames: ["a"], handingOver: [0], window: .seconds(10),
                                        logger: Logger(label: "test"))
        defer { handoff.close() }  // closes inbox[0]
        // The client's next request reached the socket before this connection's moment came.
        XCTAssertEqual(write(pair[1], "GET / HTTP/1.1\r\n\r\n", 18), 18)
        channel.pipeline.fireUserInboundEventTriggered(DrainConnectionEvent(handoff: handoff))
        loop.run()
        XCTAssertEqual(handoff.counts.handedOver, 0, "sent on now, the request would queue again in the next generation")
        XCTAssertTrue(channel.isActive)
        // The loop reads it: it is answered here, keep-alive, and the connection goes after that.
        var sink = [UInt8](repeating: 0, count: 64)
        _ = read(pair[0], &sink, sink.count)
        try request()
        XCTAssertNil(try respond().headers.first(name: "connection"))
        XCTAssertEqual(handoff.counts.handedOver, 1)
        XCTAssertEqual(handoff.counts.closed, 0)
        XCTAssertFalse(channel.isActive, "this process's descriptor of a connection handed over is closed")
        // What the next generation finds in its inbox: one connection.
        var byte: UInt8 = 0
        XCTAssertGreaterThan(recv(inbox[1], &byte, 1, Int32(MSG_DONTWAIT)), 0)
    }

    func testRequestStillArrivingIsWaitedFor() throws {
        try request()
        _ = try respond()
        // Part of a request line: read by NIO, held by the HTTP decoder, no head yet.
        try channel.writeInbound(ByteBuffer(string: "GET /he"))
        XCTAssertNil(try channel.readInbound(as: HTTPServerRequestPart.self))
        drain()
        loop.advanceTime(by: .seconds(10))
        XCTAssertTrue(channel.isActive, "a half-sent request is not an idle connection")
        try channel.writeInbound(ByteBuffer(string: "llo HTTP/1.1\r\nHost: a\r\n\r\n"))
        while try channel.readInbound(as: HTTPServerRequestPart.self) != nil {}
        XCTAssertEqual(try respond().headers["connection"], ["close"])
        XCTAssertFalse(channel.isActive)
    }

    func testAClientsLongestPauseStretchesTheGrace() throws {
        try request()
        _ = try respond()
        loop.advanceTime(by: .milliseconds(600))  // this client pauses 600 ms between requests
        try request()
        _ = try respond()
        drain()
        loop.advanceTime(by: .milliseconds(1100))
        XCTAssertTrue(channel.isActive, "quiet for less than twice its longest pause")
        loop.advanceTime(by: .milliseconds(200))
        XCTAssertFalse(channel.isActive)
    }

    func testFreshConnectionGetsTheGraceFromItsStart() throws {
        loop.advanceTime(by: .milliseconds(100))
        drain()
        loop.advanceTime(by: .milliseconds(100))
        XCTAssertTrue(channel.isActive)
        loop.advanceTime(by: .milliseconds(100))
        XCTAssertFalse(channel.isActive)
    }
}
