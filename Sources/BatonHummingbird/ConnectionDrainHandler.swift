import NIOCore
import NIOHTTP1

/// Tells one connection that its worker is draining.
public struct DrainConnectionEvent: Sendable {
    public init() {}
}

/// Ends a keep-alive connection without a client ever seeing an error, and keeps HTTP/1.1's
/// connection semantics that Hummingbird leaves out.
///
/// Sits in the HTTP/1 part of the pipeline (it needs the request's version). On
/// ``DrainConnectionEvent``:
/// - a request in flight gets `Connection: close` on its response, and the connection closes
///   once that response is written;
/// - an idle connection is given `idleGrace`: a request arriving meanwhile (it may already be on
///   the wire) is still served, with `Connection: close`; after the grace the connection closes.
/// Always: a request with `Connection: close` gets it echoed and the connection closes after
/// the response; an HTTP/1.0 request without keep-alive is closed after its response; an
/// HTTP/1.0 keep-alive request gets `Connection: keep-alive` back.
final class ConnectionDrainHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private struct PendingRequest {
        var keepAlive: Bool
        var isHTTP10: Bool
    }

    private let idleGrace: TimeAmount
    /// Requests whose response has not ended yet, oldest first.
    private var pending: [PendingRequest] = []
    private var draining = false
    private var responseCloses = false
    private var closing = false
    private var idleClose: Scheduled<Void>?

    init(idleGrace: TimeAmount) {
        self.idleGrace = idleGrace
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = unwrapInboundIn(data) {
            pending.append(PendingRequest(keepAlive: head.isKeepAlive, isHTTP10: head.version == .http1_0))
            idleClose?.cancel()
            idleClose = nil
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head):
            let request = pending.first ?? PendingRequest(keepAlive: true, isHTTP10: false)
            let appCloses = head.headers[canonicalForm: "connection"].contains { $0.lowercased() == "close" }
            responseCloses = draining || !request.keepAlive || appCloses
            if responseCloses {
                head.headers.replaceOrAdd(name: "connection", value: "close")
            } else if request.isHTTP10 {
                head.headers.replaceOrAdd(name: "connection", value: "keep-alive")
            }
            context.write(wrapOutboundOut(.head(head)), promise: promise)
        case .body:
            context.write(data, promise: promise)
        case .end:
            if !pending.isEmpty { pending.removeFirst() }
            if responseCloses {
                closing = true
                let written = promise ?? context.eventLoop.makePromise()
                context.writeAndFlush(data, promise: written)
                written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            } else {
                context.write(data, promise: promise)
                // The response began before the drain, without `Connection: close`: the client
                // may send another request right away, which the grace lets us answer.
                if draining && pending.isEmpty { scheduleIdleClose(context: context) }
            }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is DrainConnectionEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        guard !draining else { return }
        draining = true
        if pending.isEmpty { scheduleIdleClose(context: context) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        idleClose?.cancel()
        idleClose = nil
        context.fireChannelInactive()
    }

    private func scheduleIdleClose(context: ChannelHandlerContext) {
        guard !closing, idleClose == nil else { return }
        idleClose = context.eventLoop.assumeIsolated().scheduleTask(in: idleGrace) {
            self.idleClose = nil
            if self.pending.isEmpty && !self.closing {
                self.closing = true
                context.close(promise: nil)
            }
        }
    }
}
