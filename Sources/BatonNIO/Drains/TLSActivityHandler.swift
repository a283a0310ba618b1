import NIOCore
import NIOTLS

/// Sits right after NIOSSL's handler in a TLS connection's pipeline, where the plaintext is.
///
/// Below TLS, the ``ConnectionSocketHandler`` sees only records: a handshake message or an alert
/// would look like a request on its way, and a request boundary cannot be read off ciphertext.
/// So under TLS this handler keeps the connection's ``ConnectionActivity`` instead, from the
/// plaintext: when a request began arriving, how long the client pauses. The drain rules read it
/// as they do for a plain connection.
///
/// With ALPN the protocol's handlers are only added once the handshake has chosen HTTP/2 or
/// HTTP/1.1: when the handshake-completed event has passed (the negotiation handler builds the
/// pipeline right then), this handler puts that protocol's drain in (``DrainHandlers``).
public final class TLSActivityHandler: ChannelInboundHandler, RemovableChannelHandler {
    /// Whatever NIOSSL passes up: plaintext bytes, or the protocol's frames once ALPN chose HTTP/2.
    public typealias InboundIn = Any
    /// The same, passed on unchanged.
    public typealias InboundOut = Any

    let activity: ConnectionActivity
    private let idleGrace: TimeAmount
    private var drainPlaced = false

    init(activity: ConnectionActivity, idleGrace: TimeAmount) {
        self.activity = activity
        self.idleGrace = idleGrace
    }

    /// Starts the connection's clock: its first pause is measured from here.
    public func handlerAdded(context: ChannelHandlerContext) {
        activity.lastActivity = context.eventLoop.now
    }

    /// Notes from the plaintext when a request began arriving and how long the client paused, and
    /// puts the negotiated protocol's drain in at the first read.
    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        activity.requestBytesArrived(at: context.eventLoop.now)
        placeDrain(context: context)
        context.fireChannelRead(data)
    }

    /// Puts the negotiated protocol's drain in once the TLS handshake has completed.
    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        context.fireUserInboundEventTriggered(event)
        if case TLSUserEvent.handshakeCompleted = event { placeDrain(context: context) }
    }

    private func placeDrain(context: ChannelHandlerContext) {
        guard !drainPlaced else { return }
        do {
            switch try DrainHandlers.addProtocolDrain(to: context.channel, idleGrace: idleGrace) {
            case .http1?: activity.count(as: .https)
            case .http2?: activity.count(as: .h2)
            default: return
            }
            drainPlaced = true
        } catch {
            drainPlaced = true  // it will not do better next time; the drain deadline still closes it
            context.fireErrorCaught(error)
        }
    }
}
