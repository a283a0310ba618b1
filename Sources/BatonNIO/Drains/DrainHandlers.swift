import NIOCore
import NIOHTTP1
import NIOHTTP2

/// Puts Baton's drain into a pipeline that a framework's child channel has just built, rather
/// than into a copy of that framework's pipeline: whatever the framework's builder (HTTP/1,
/// HTTP/1 with WebSocket upgrades, h2c), the handler that drains its protocol goes where it can
/// see that protocol.
public enum DrainHandlers {
    /// What a connection speaks, as far as its drain is concerned.
    public enum Kind: String, Sendable {
        /// HTTP/1.x: a ``ConnectionDrainHandler`` (hand-over at a request boundary, or a
        /// graceful close).
        case http1
        /// HTTP/2: an ``HTTP2DrainHandler`` (the two-step GOAWAY).
        case http2
        /// TLS: no drain yet (a TLS session cannot be handed over, and a close must go through
        /// TLS to send close_notify); nothing drains it but the drain deadline.
        case tls
        /// A pipeline Baton does not know: nothing drains it but the drain deadline.
        case unknown
    }

    /// Adds the drain handler `channel`'s pipeline lacks, and says which: a
    /// ``ConnectionDrainHandler`` right after the HTTP/1 request decoder (before any conversion
    /// to HTTP types, which drops the request's version), or an ``HTTP2DrainHandler`` right after
    /// `NIOHTTP2Handler`. A pipeline that has its drain handler already (``ConnectionDrainHandler``
    /// added by the framework adapter itself) is left as it is, and so is one with TLS.
    ///
    /// Call it on the channel's event loop once the framework's setup has completed, before the
    /// channel becomes active.
    @discardableResult
    public static func add(to channel: any Channel, idleGrace: TimeAmount) throws -> Kind {
        let pipeline = channel.pipeline.syncOperations
        if (try? pipeline.handler(type: ConnectionDrainHandler.self)) != nil { return .http1 }
        if (try? pipeline.handler(type: HTTP2DrainHandler.self)) != nil { return .http2 }
        // By name: BatonNIO does not link NIOSSL. The HTTP/1 drain works on the socket's bytes
        // (request boundaries, hand-over, its closes), which TLS makes ciphertext.
        let description = channel.pipeline.debugDescription
        if description.contains("NIOSSLServerHandler") || description.contains("ApplicationProtocolNegotiationHandler") { return .tls }
        if let decoder = try? pipeline.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self) {
            try pipeline.addHandler(ConnectionDrainHandler(idleGrace: idleGrace), position: .after(decoder))
            return .http1
        }
        if let http2 = try? pipeline.handler(type: NIOHTTP2Handler.self) {
            try pipeline.addHandler(HTTP2DrainHandler(), position: .after(http2))
            return .http2
        }
        return .unknown
    }
}
