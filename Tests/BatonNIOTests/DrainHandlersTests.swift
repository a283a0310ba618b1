import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOHTTP2
import XCTest
@testable import BatonNIO

/// Each protocol's pipeline, as a framework builds it, gets its drain handler where it can see
/// that protocol; an HTTP/2 connection's drain reaches its connection manager only, once.
final class DrainHandlersTests: XCTestCase {
    /// Records the user events that reach it.
    final class EventRecorder: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = Any
        var events: [Any] = []
        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            events.append(event)
            context.fireUserInboundEventTriggered(event)
        }
    }

    /// The pipeline's handlers, one line each, first to last (NIO's debug description).
    private func handlers(_ channel: EmbeddedChannel) -> [String] {
        Array(channel.pipeline.debugDescription.split(separator: "\n").map(String.init).dropFirst(2))
    }

    /// Whether the handler whose line contains `second` comes right after the one with `first`.
    private func follows(_ second: String, _ first: String, in channel: EmbeddedChannel) -> Bool {
        let lines = handlers(channel)
        guard let index = lines.firstIndex(where: { $0.contains(first) }), index + 1 < lines.count else { return false }
        return lines[index + 1].contains(second)
    }

    /// HTTP/1 (`configureHTTPServerPipeline`, as Hummingbird's `HTTP1Channel` does): the drain
    /// handler goes right after the request decoder, before the parts become HTTP types.
    func testHTTP1GetsTheConnectionDrainHandlerRightAfterTheDecoder() throws {
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        let pipeline = channel.pipeline.syncOperations
        try pipeline.addHandler(ConnectionSocketHandler(fd: nil), name: ConnectionSocketHandler.name)
        try pipeline.configureHTTPServerPipeline(withPipeliningAssistance: false, withErrorHandling: false)
        let last = EventRecorder()
        try pipeline.addHandler(last)
        XCTAssertEqual(try DrainHandlers.add(to: channel, idleGrace: .seconds(1)), .http1)
        XCTAssertTrue(follows("ConnectionDrainHandler", "ByteToMessageHandler<HTTPDecoder<HTTPPart<HTTPRequestHead", in: channel), "right after the decoder:\n\(channel.pipeline.debugDescription)")
        // Added once: a second call finds it.
        XCTAssertEqual(try DrainHandlers.add(to: channel, idleGrace: .seconds(1)), .http1)
        XCTAssertEqual(handlers(channel).filter { $0.contains("ConnectionDrainHandler") }.count, 1, channel.pipeline.debugDescription)
    }

    /// HTTP/2: the drain handler goes right after `NIOHTTP2Handler`.
    func testHTTP2GetsTheGoAwayDrainRightAfterTheHTTP2Handler() throws {
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        let pipeline = channel.pipeline.syncOperations
        try pipeline.addHandler(ConnectionSocketHandler(fd: nil), name: ConnectionSocketHandler.name)
        try pipeline.addHandler(NIOHTTP2Handler(mode: .server))
        let manager = EventRecorder()
        try pipeline.addHandler(manager)
        XCTAssertEqual(try DrainHandlers.add(to: channel, idleGrace: .seconds(1)), .http2)
        XCTAssertTrue(follows("HTTP2DrainHandler", "NIOHTTP2Handler", in: channel), "right after NIOHTTP2Handler:\n\(channel.pipeline.debugDescription)")
    }

    /// An upgrade's 101 goes out untouched, even during a drain (no `Connection: close`), and the
    /// HTTP drain handler leaves the pipeline: the bytes that follow are not HTTP.
    func testASwitchingProtocolsAnswerPassesAndTheHandlerLeaves() throws {
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        try channel.pipeline.syncOperations.addHandler(ConnectionDrainHandler(idleGrace: .seconds(1)))
        var request = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/ws")
        request.headers = ["connection": "upgrade", "upgrade": "websocket"]
        try channel.writeInbound(HTTPServerRequestPart.head(request))
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        _ = try channel.readInbound(as: HTTPServerRequestPart.self)
        _ = try channel.readInbound(as: HTTPServerRequestPart.self)
        channel.pipeline.fireUserInboundEventTriggered(DrainConnectionEvent())
        let upgrade = HTTPResponseHead(version: .http1_1, status: .switchingProtocols, headers: ["connection": "upgrade", "upgrade": "websocket"])
        try channel.writeOutbound(HTTPServerResponsePart.head(upgrade))
        guard case .head(let written) = try XCTUnwrap(try channel.readOutbound(as: HTTPServerResponsePart.self)) else { return XCTFail("no head") }
        XCTAssertEqual(written.headers["connection"], ["upgrade"])
        XCTAssertThrowsError(try channel.pipeline.syncOperations.handler(type: ConnectionDrainHandler.self), "the handler left")
        // What follows passes untouched (WebSocket frames, as bytes here).
        try channel.writeInbound(ByteBuffer(string: "frame"))
        XCTAssertEqual(try channel.readInbound(as: ByteBuffer.self), ByteBuffer(string: "frame"))
    }

    /// Stands in for NIOSSL's handler, which DrainHandlers knows by its type's name (BatonNIO
    /// does not link NIOSSL).
    final class NIOSSLServerHandlerStandIn: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
    }

    /// HTTP/1 over TLS gets no HTTP/1 drain: that drain reads request boundaries off the socket,
    /// hands sockets over and closes below TLS, none of which holds under TLS.
    func testHTTP1OverTLSIsLeftAlone() throws {
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        let pipeline = channel.pipeline.syncOperations
        try pipeline.addHandler(ConnectionSocketHandler(fd: nil), name: ConnectionSocketHandler.name)
        try pipeline.addHandler(NIOSSLServerHandlerStandIn())
        try pipeline.configureHTTPServerPipeline(withPipeliningAssistance: false, withErrorHandling: false)
        XCTAssertEqual(try DrainHandlers.add(to: channel, idleGrace: .seconds(1)), .tls)
        XCTAssertThrowsError(try pipeline.handler(type: ConnectionDrainHandler.self))
    }

    /// A pipeline of neither kind is left alone, and says so.
    func testAnUnknownPipelineIsLeftAlone() throws {
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        try channel.pipeline.syncOperations.addHandler(EventRecorder())
        XCTAssertEqual(try DrainHandlers.add(to: channel, idleGrace: .seconds(1)), .unknown)
        XCTAssertThrowsError(try channel.pipeline.syncOperations.handler(type: ConnectionDrainHandler.self))
        XCTAssertThrowsError(try channel.pipeline.syncOperations.handler(type: HTTP2DrainHandler.self))
    }

    /// The drain becomes one `ChannelShouldQuiesceEvent` for what follows (Hummingbird's
    /// connection manager, which writes the GOAWAYs); a second drain, a resume or a canary's
    /// share change nothing; other events pass.
    func testTheDrainBecomesOneQuiesceEventForTheConnectionManager() throws {
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        let manager = EventRecorder()
        try channel.pipeline.syncOperations.addHandler(HTTP2DrainHandler())
        try channel.pipeline.syncOperations.addHandler(manager)
        channel.pipeline.fireUserInboundEventTriggered(DrainConnectionEvent())
        XCTAssertEqual(manager.events.count, 1)
        XCTAssertTrue(manager.events.first is ChannelShouldQuiesceEvent, "\(manager.events)")
        channel.pipeline.fireUserInboundEventTriggered(ResumeConnectionEvent())
        channel.pipeline.fireUserInboundEventTriggered(DrainConnectionEvent())
        XCTAssertEqual(manager.events.count, 1, "a GOAWAY cannot be taken back, nor sent twice: \(manager.events)")
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        XCTAssertEqual(manager.events.count, 2)
        XCTAssertTrue(manager.events.last is ChannelEvent, "\(manager.events)")
        // Reads pass untouched.
        try channel.writeInbound(ByteBuffer(string: "x"))
        XCTAssertEqual(try channel.readInbound(as: ByteBuffer.self), ByteBuffer(string: "x"))
    }
}
