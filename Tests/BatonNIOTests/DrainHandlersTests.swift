import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOHTTP2
import NIOTLS
import NIOWebSocket
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
        XCTAssertEqual(try DrainHandlers.add(to: channel, configuration: DrainConfiguration()), .http1)
        XCTAssertEqual(try pipeline.handler(type: ConnectionSocketHandler.self).activity.kind, .http1)
        XCTAssertTrue(follows("ConnectionDrainHandler", "ByteToMessageHandler<HTTPDecoder<HTTPPart<HTTPRequestHead", in: channel), "right after the decoder:\n\(channel.pipeline.debugDescription)")
        // Added once: a second call finds it.
        XCTAssertEqual(try DrainHandlers.add(to: channel, configuration: DrainConfiguration()), .http1)
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
        XCTAssertEqual(try DrainHandlers.add(to: channel, configuration: DrainConfiguration()), .http2)
        XCTAssertTrue(follows("HTTP2DrainHandler", "NIOHTTP2Handler", in: channel), "right after NIOHTTP2Handler:\n\(channel.pipeline.debugDescription)")
    }

    /// An upgrade's 101 goes out untouched, even during a drain (no `Connection: close`), and the
    /// HTTP drain handler leaves the pipeline: the bytes that follow are not HTTP.
    func testASwitchingProtocolsAnswerPassesAndTheHandlerLeaves() throws {
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        let socket = ConnectionSocketHandler(fd: nil)
        socket.activity.census = ConnectionCensus()
        try channel.pipeline.syncOperations.addHandler(socket, name: ConnectionSocketHandler.name)
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
        XCTAssertEqual(socket.activity.kind, .ws, "counted as a WebSocket from now on")
        XCTAssertEqual(socket.activity.census.snapshot, [.ws: 1])
        // What follows passes untouched (WebSocket frames, as bytes here).
        try channel.writeInbound(ByteBuffer(string: "frame"))
        XCTAssertEqual(try channel.readInbound(as: ByteBuffer.self), ByteBuffer(string: "frame"))
    }

    /// A client that upgrades to WebSocket while the connection drains (it reconnected to a
    /// generation about to drain) gets the WebSocket drain once the upgrade has put its frame
    /// decoder in: else it would stay open until the drain deadline.
    func testAnUpgradeDuringTheDrainGetsTheWebSocketDrain() throws {
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        let socket = ConnectionSocketHandler(fd: nil)
        socket.activity.census = ConnectionCensus()
        socket.activity.webSocketDrain = WebSocketDrainSettings(window: .seconds(5), hookTimeout: .seconds(1), quietWait: .seconds(1), closeTimeout: .seconds(5))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9)).wait()
        try channel.pipeline.syncOperations.addHandler(socket, name: ConnectionSocketHandler.name)
        try channel.pipeline.syncOperations.addHandler(ConnectionDrainHandler(idleGrace: .seconds(1)))
        var request = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/ws")
        request.headers = ["connection": "upgrade", "upgrade": "websocket"]
        try channel.writeInbound(HTTPServerRequestPart.head(request))
        channel.pipeline.fireUserInboundEventTriggered(DrainConnectionEvent())
        XCTAssertThrowsError(try channel.pipeline.syncOperations.handler(type: WebSocketDrainHandler.self), "not a WebSocket yet")
        let upgrade = HTTPResponseHead(version: .http1_1, status: .switchingProtocols, headers: ["connection": "upgrade", "upgrade": "websocket"])
        try channel.writeOutbound(HTTPServerResponsePart.head(upgrade))
        // The upgrader's handlers come after the 101 has gone.
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(WebSocketFrameDecoder()))
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(10))
        XCTAssertNoThrow(try channel.pipeline.syncOperations.handler(type: WebSocketDrainHandler.self), channel.pipeline.debugDescription)
    }

    /// HTTP/1 over TLS (`.tls(.http1())`): the drain handler after the decoder, and a
    /// ``TLSActivityHandler`` right after NIOSSL's handler; the connection is marked TLS.
    func testHTTP1OverTLSGetsTheDrainAndThePlaintextActivity() throws {
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        let pipeline = channel.pipeline.syncOperations
        let socket = ConnectionSocketHandler(fd: nil)
        try pipeline.addHandler(socket, name: ConnectionSocketHandler.name)
        try pipeline.addHandler(NIOSSLServerHandler())
        try pipeline.configureHTTPServerPipeline(withPipeliningAssistance: false, withErrorHandling: false)
        XCTAssertEqual(try DrainHandlers.add(to: channel, configuration: DrainConfiguration()), .http1)
        XCTAssertTrue(follows("TLSActivityHandler", "NIOSSLServerHandler", in: channel), channel.pipeline.debugDescription)
        XCTAssertTrue(follows("ConnectionDrainHandler", "ByteToMessageHandler<HTTPDecoder<HTTPPart<HTTPRequestHead", in: channel), channel.pipeline.debugDescription)
        XCTAssertTrue(socket.activity.isTLS)
        XCTAssertEqual(socket.activity.kind, .https)
        XCTAssertEqual(try DrainHandlers.add(to: channel, configuration: DrainConfiguration()), .http1, "a second call adds nothing")
        XCTAssertEqual(handlers(channel).filter { $0.contains("TLSActivityHandler") }.count, 1, channel.pipeline.debugDescription)
    }

    /// The TLS handler is searched for (in the pipeline's description) once per listener: the
    /// next connections of a listener find it by the name remembered, and those of a listener
    /// without TLS are not searched again.
    func testEachListenerIsSearchedForTLSOnce() throws {
        let configuration = DrainConfiguration()
        func connection(listener: Int, tls: Bool) throws -> (EmbeddedChannel, ConnectionSocketHandler) {
            let channel = EmbeddedChannel()
            let pipeline = channel.pipeline.syncOperations
            let socket = ConnectionSocketHandler(fd: nil, listener: listener)
            try pipeline.addHandler(socket, name: ConnectionSocketHandler.name)
            if tls { try pipeline.addHandler(NIOSSLServerHandler()) }
            try pipeline.configureHTTPServerPipeline(withPipeliningAssistance: false, withErrorHandling: false)
            return (channel, socket)
        }
        for index in 0..<3 {
            let (secure, secureSocket) = try connection(listener: 0, tls: true)
            let (plain, plainSocket) = try connection(listener: 1, tls: false)
            defer { _ = try? secure.finish(); _ = try? plain.finish() }
            XCTAssertEqual(try DrainHandlers.add(to: secure, configuration: configuration), .http1)
            XCTAssertEqual(try DrainHandlers.add(to: plain, configuration: configuration), .http1)
            XCTAssertTrue(follows("TLSActivityHandler", "NIOSSLServerHandler", in: secure), "connection \(index): \(secure.pipeline.debugDescription)")
            XCTAssertEqual(secureSocket.activity.kind, .https, "connection \(index)")
            XCTAssertEqual(plainSocket.activity.kind, .http1, "connection \(index)")
            XCTAssertFalse(handlers(plain).contains { $0.contains("TLSActivityHandler") }, "connection \(index)")
        }
        // What the memo holds is checked against the handler's type: a listener whose pipeline
        // has something else under the remembered name is searched again.
        let (other, otherSocket) = try connection(listener: 0, tls: false)
        defer { _ = try? other.finish() }
        XCTAssertEqual(try DrainHandlers.add(to: other, configuration: configuration), .http1)
        XCTAssertEqual(otherSocket.activity.kind, .http1)
    }

    /// TLS with ALPN (`.http2Upgrade`): nothing to drain until the handshake has chosen; once
    /// the handshake-completed event has passed (the negotiation handler builds the pipeline
    /// then), the drain of the chosen protocol goes in.
    func testALPNGetsItsDrainOnceTheHandshakeHasChosen() throws {
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        let pipeline = channel.pipeline.syncOperations
        let socket = ConnectionSocketHandler(fd: nil)
        let census = ConnectionCensus()
        socket.activity.census = census
        try pipeline.addHandler(socket, name: ConnectionSocketHandler.name)
        try pipeline.addHandler(NIOSSLServerHandler())
        let negotiation = NegotiationStandIn()
        try pipeline.addHandler(negotiation)
        XCTAssertEqual(try DrainHandlers.add(to: channel, configuration: DrainConfiguration()), .negotiating)
        XCTAssertThrowsError(try pipeline.handler(type: HTTP2DrainHandler.self))
        channel.pipeline.fireUserInboundEventTriggered(TLSUserEvent.handshakeCompleted(negotiatedProtocol: "h2"))
        XCTAssertTrue(follows("HTTP2DrainHandler", "NIOHTTP2Handler", in: channel), channel.pipeline.debugDescription)
        XCTAssertEqual(census.snapshot, [.h2: 1], "counted as TLS while negotiating, as h2 once chosen")
        try channel.close().wait()
        XCTAssertEqual(census.snapshot, [:], "and no more once closed")
    }

    /// A TLS connection is not handed over, and its graceful close goes through the whole
    /// pipeline (NIOSSL sends close_notify), not from the socket end below TLS.
    func testATLSConnectionClosesThroughTLSAndIsNotHandedOver() throws {
        let channel = EmbeddedChannel()
        let pipeline = channel.pipeline.syncOperations
        try pipeline.addHandler(ConnectionSocketHandler(fd: 42, listener: 0), name: ConnectionSocketHandler.name)
        let tls = NIOSSLServerHandler()
        try pipeline.addHandler(tls)
        try pipeline.configureHTTPServerPipeline(withPipeliningAssistance: false, withErrorHandling: false)
        XCTAssertEqual(try DrainHandlers.add(to: channel, configuration: DrainConfiguration()), .http1)
        let handOver = channel.eventLoop.makePromise(of: Void.self)
        channel.pipeline.triggerUserOutboundEvent(HandOverEvent(handoff: ConnectionHandoff(inbox: -1, listenerNames: ["a"], handingOver: [0], window: .seconds(1), logger: Logger(label: "test"))), promise: handOver)
        XCTAssertThrowsError(try handOver.futureResult.wait()) { error in
            XCTAssertEqual((error as? HandOverFailure)?.outcome, .closed)
        }
        XCTAssertEqual(tls.closes, 0)
        channel.pipeline.triggerUserOutboundEvent(GracefulCloseEvent(), promise: nil)
        XCTAssertEqual(tls.closes, 1, "the close passed through TLS")
        XCTAssertFalse(channel.isActive)
    }

    /// A pipeline of neither kind is left alone, and says so.
    func testAnUnknownPipelineIsLeftAlone() throws {
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        try channel.pipeline.syncOperations.addHandler(EventRecorder())
        XCTAssertEqual(try DrainHandlers.add(to: channel, configuration: DrainConfiguration()), .unknown)
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

/// Stands in for NIOSSL's handler, which DrainHandlers knows by its type's name (BatonNIO does
/// not link NIOSSL): passes everything, counts the closes that reach it.
final class NIOSSLServerHandler: ChannelDuplexHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    var closes = 0
    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        closes += 1
        context.close(mode: mode, promise: promise)
    }
}

/// Stands in for the ALPN negotiation handler: on the handshake's end it builds the HTTP/2
/// pipeline after itself and, like NIO's, does not pass the event on.
final class NegotiationStandIn: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case TLSUserEvent.handshakeCompleted = event else { return context.fireUserInboundEventTriggered(event) }
        try! context.pipeline.syncOperations.addHandler(NIOHTTP2Handler(mode: .server), position: .after(self))
    }
}
