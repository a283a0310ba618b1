import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOWebSocket

/// Puts Baton's drain into a pipeline that a framework's child channel has just built, rather
/// than into a copy of that framework's pipeline: whatever the framework's builder (HTTP/1,
/// HTTP/1 with WebSocket upgrades, h2c, any of them over TLS), the handler that drains its
/// protocol goes where it can see that protocol.
public enum DrainHandlers {
    /// What a connection speaks, as far as its drain is concerned.
    public enum Kind: String, Sendable {
        /// HTTP/1.x: a ``ConnectionDrainHandler`` (hand-over at a request boundary, or a
        /// graceful close; over TLS, always the graceful close).
        case http1
        /// HTTP/2: an ``HTTP2DrainHandler`` (the two-step GOAWAY).
        case http2
        /// TLS whose protocol is chosen in the handshake (ALPN): the ``TLSActivityHandler``
        /// puts the drain of the chosen protocol in once the handshake is done.
        case negotiating
        /// A pipeline Baton does not know: nothing drains it but the drain deadline.
        case unknown
    }

    /// NIOSSL's server handler, known by its type's name: BatonNIO does not link NIOSSL (an app
    /// without TLS should not carry BoringSSL for Baton's sake).
    static let tlsHandlerTypeName = "NIOSSLServerHandler"

    /// Adds the drain handler `channel`'s pipeline lacks, and says which: a
    /// ``ConnectionDrainHandler`` right after the HTTP/1 request decoder (before any conversion
    /// to HTTP types, which drops the request's version), or an ``HTTP2DrainHandler`` right after
    /// `NIOHTTP2Handler`. Under TLS a ``TLSActivityHandler`` also goes right after NIOSSL's
    /// handler: it follows the connection's plaintext, marks the connection as TLS (no hand-over;
    /// closes go through TLS, with close_notify), and places the drain after an ALPN handshake.
    /// A pipeline that has its drain handler already is left as it is.
    ///
    /// A connection that becomes a WebSocket later (an HTTP/1 upgrade) gets a
    /// ``WebSocketDrainHandler`` when its drain comes.
    ///
    /// Call it on the channel's event loop once the framework's setup has completed.
    @discardableResult
    public static func add(to channel: any Channel, configuration: DrainConfiguration) throws -> Kind {
        let idleGrace = configuration.idleGrace
        let pipeline = channel.pipeline.syncOperations
        let socket = try? pipeline.handler(type: ConnectionSocketHandler.self)
        socket?.activity.webSocketDrain = configuration.webSocketDrain
        if (try? pipeline.handler(type: TLSActivityHandler.self)) == nil,
           let tls = try configuration.tlsHandlers.context(in: channel, listener: socket?.activity.listener) {
            let activity = socket?.activity ?? ConnectionActivity(fd: nil, listener: nil)
            activity.isTLS = true
            try pipeline.addHandler(TLSActivityHandler(activity: activity, idleGrace: idleGrace), position: .after(tls.handler))
        }
        let kind: Kind
        if let added = try addProtocolDrain(to: channel, idleGrace: idleGrace) {
            kind = added
        } else {
            kind = (try? pipeline.handler(type: TLSActivityHandler.self)) != nil ? .negotiating : .unknown
        }
        if let activity = socket?.activity {
            switch kind {
            case .http1: activity.count(as: activity.isTLS ? .https : .http1)
            case .http2: activity.count(as: activity.isTLS ? .h2 : .h2c)
            case .negotiating: activity.count(as: .tls)
            case .unknown: activity.count(as: .other)
            }
        }
        return kind
    }

    /// The drain of the protocol the pipeline speaks now, added if it is not there yet; nil:
    /// neither HTTP/1 nor HTTP/2 (yet).
    static func addProtocolDrain(to channel: any Channel, idleGrace: TimeAmount) throws -> Kind? {
        let pipeline = channel.pipeline.syncOperations
        if (try? pipeline.handler(type: ConnectionDrainHandler.self)) != nil { return .http1 }
        if (try? pipeline.handler(type: HTTP2DrainHandler.self)) != nil { return .http2 }
        if let decoder = try? pipeline.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self) {
            try pipeline.addHandler(ConnectionDrainHandler(idleGrace: idleGrace), position: .after(decoder))
            return .http1
        }
        if let http2 = try? pipeline.handler(type: NIOHTTP2Handler.self) {
            let writer = HTTP2FrameWriter()
            try pipeline.addHandler(writer, position: .before(http2))
            try pipeline.addHandler(HTTP2DrainHandler(writer: writer), position: .after(http2))
            return .http2
        }
        return nil
    }

    /// A ``WebSocketDrainHandler`` right after the WebSocket frame decoder, if the pipeline has
    /// one and no WebSocket drain yet.
    static func addWebSocketDrain(to pipeline: ChannelPipeline, settings: WebSocketDrainSettings, activity: ConnectionActivity) {
        let operations = pipeline.syncOperations
        guard (try? operations.handler(type: WebSocketDrainHandler.self)) == nil,
              let decoder = try? operations.handler(type: ByteToMessageHandler<WebSocketFrameDecoder>.self) else { return }
        try? operations.addHandler(WebSocketDrainHandler(settings: settings, activity: activity), position: .after(decoder))
    }

    /// For a connection upgraded to WebSocket after its drain began: once the upgrade has added
    /// the frame decoder (the upgrader does so right after the 101 is written), tells the
    /// connection of the drain again, which now gives it the ``WebSocketDrainHandler``. Looks
    /// every 10 ms for up to a second; a connection that never becomes a WebSocket is left to the
    /// drain deadline.
    static func drainOnceUpgraded(_ channel: any Channel, attempts: Int = 100) {
        channel.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(10)) {
            guard channel.isActive else { return }
            if (try? channel.pipeline.syncOperations.handler(type: ByteToMessageHandler<WebSocketFrameDecoder>.self)) != nil {
                channel.pipeline.fireUserInboundEventTriggered(DrainConnectionEvent())
            } else if attempts > 1 {
                drainOnceUpgraded(channel, attempts: attempts - 1)
            }
        }
    }

    /// The context of the pipeline's TLS handler, if it has one. NIO names every handler in its
    /// pipeline's description (`<type> ↓↑ <type> [<name>]`), and a context can be looked up by
    /// name. Building that description costs as much as the rest of a connection's set-up:
    /// ``TLSHandlerMemo`` does it once per listener.
    static func tlsContext(of channel: any Channel) throws -> ChannelHandlerContext? {
        for line in channel.pipeline.debugDescription.split(separator: "\n") {
            let words = line.split(separator: " ")
            guard words.contains(where: { $0 == tlsHandlerTypeName }), let last = words.last,
                  last.hasPrefix("["), last.hasSuffix("]") else { continue }
            return try channel.pipeline.syncOperations.context(name: String(last.dropFirst().dropLast()))
        }
        return nil
    }
}

/// Where the pipelines of each listener have their TLS handler, learnt from the first connection
/// of each: one server builds every pipeline of a listener with the same builder, so the TLS
/// handler (or its absence) and its name are the same for all of them. A remembered name is
/// checked against the handler's type before use; a pipeline on no known listener is searched.
final class TLSHandlerMemo: Sendable {
    private enum Known: Sendable {
        case none
        case named(String, handlerType: ObjectIdentifier)
    }
    private let byListener = NIOLockedValueBox<[Int: Known]>([:])

    func context(in channel: any Channel, listener: Int?) throws -> ChannelHandlerContext? {
        guard let listener else { return try DrainHandlers.tlsContext(of: channel) }
        switch byListener.withLockedValue({ $0[listener] }) {
        case .none?:
            return nil
        case .named(let name, let handlerType)?:
            if let context = try? channel.pipeline.syncOperations.context(name: name),
               ObjectIdentifier(type(of: context.handler)) == handlerType { return context }
        case nil:
            break
        }
        let found = try DrainHandlers.tlsContext(of: channel)
        byListener.withLockedValue {
            $0[listener] = found.map { .named($0.name, handlerType: ObjectIdentifier(type(of: $0.handler))) } ?? Known.none
        }
        return found
    }
}
