import NIOCore
import NIOEmbedded
import NIOHTTP1
import XCTest
@testable import BatonHummingbird

/// The drain rules, on an in-memory channel with a virtual clock.
final class ConnectionDrainHandlerTests: XCTestCase {
    private var loop: EmbeddedEventLoop!
    private var channel: EmbeddedChannel!

    override func setUp() {
        loop = EmbeddedEventLoop()
        channel = EmbeddedChannel(handler: ConnectionDrainHandler(idleGrace: .milliseconds(250)), loop: loop)
        XCTAssertNoThrow(try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 80)).wait())
    }

    override func tearDown() {
        _ = try? channel.finish()
    }

    private func request(_ version: HTTPVersion = .http1_1, headers: HTTPHeaders = [:]) throws {
        try channel.writeInbound(HTTPServerRequestPart.head(HTTPRequestHead(version: version, method: .GET, uri: "/hello", headers: headers)))
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        _ = try channel.readInbound(as: HTTPServerRequestPart.self)
        _ = try channel.readInbound(as: HTTPServerRequestPart.self)
    }

    /// Writes a response and returns the head as it left the handler.
    private func respond(headers: HTTPHeaders = [:]) throws -> HTTPResponseHead {
        channel.write(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers)), promise: nil)
        try channel.writeAndFlush(HTTPServerResponsePart.end(nil)).wait()
        guard case .head(let head) = try channel.readOutbound(as: HTTPServerResponsePart.self) else {
            XCTFail("no response head")
            return HTTPResponseHead(version: .http1_1, status: .imATeapot)
        }
        _ = try channel.readOutbound(as: HTTPServerResponsePart.self)
        return head
    }

    private func drain() {
        channel.pipeline.fireUserInboundEventTriggered(DrainConnectionEvent())
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
