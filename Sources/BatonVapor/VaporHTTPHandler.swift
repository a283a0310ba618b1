import Baton
import BatonNIO
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOWebSocket
import Vapor

/// Turns NIO's HTTP/1 parts into Vapor `Request`s, answers them with the application's responder
/// and writes the `Response`s, one request at a time in arrival order (pipelined requests wait
/// their turn). Sits above a ``ConnectionDrainHandler``, which decides `Connection: close` and
/// closes the connection: this handler never closes it for keep-alive reasons itself.
///
/// What Vapor's own (internal) handlers do that this one does too: the body is collected up to
/// the limit and a larger one is answered 413 by the application's middleware (so the error
/// middleware formats it) after the rest is read and discarded; `Date` and the configured
/// `Server` header; no body for HEAD, 204 and 304; streaming bodies written and flushed chunk by
/// chunk; `Response.upgrader` (WebSocket) honoured.
final class VaporHTTPHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = Never
    typealias OutboundOut = HTTPServerResponsePart

    /// What a connection's handlers share, built once per server.
    struct Shared: Sendable {
        let application: Application
        let responder: any Responder
        /// The application's middleware around a responder that throws 413.
        let tooLarge: any Responder
        let maxBodySize: Int
        let serverName: String?
        let logger: Logger
        let streamFallbackWarning: NIOLockedValueBox<Bool>
    }

    private struct Incoming {
        var head: HTTPRequestHead
        var body: ByteBuffer?
        var size = 0
        var tooLarge = false
    }

    /// Requests queued beyond this stop reading from the socket until one is answered.
    private static let maxQueued = 16

    private let shared: Shared
    /// The HTTP handlers to remove from the pipeline when the connection is upgraded.
    private let httpHandlers: [any RemovableChannelHandler]
    private var receiving: Incoming?
    private var queue = CircularBuffer<Incoming>()
    private var busy = false
    private var readPending = false
    private var upgraded = false
    private var remoteAddress: SocketAddress?
    private var date = HTTPDate()

    init(shared: Shared, httpHandlers: [any RemovableChannelHandler]) {
        self.shared = shared
        self.httpHandlers = httpHandlers
    }

    func handlerAdded(context: ChannelHandlerContext) {
        remoteAddress = context.channel.remoteAddress
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            receiving = Incoming(head: head)
        case .body(let buffer):
            guard var incoming = receiving else { return }
            receiving = nil  // so that the body buffer below is not shared (no copy on write)
            incoming.size += buffer.readableBytes
            if incoming.size > shared.maxBodySize {
                incoming.tooLarge = true
                incoming.body = nil
            } else if incoming.body == nil {
                incoming.body = buffer
            } else {
                var buffer = buffer
                incoming.body!.writeBuffer(&buffer)
            }
            receiving = incoming
        case .end:
            guard let incoming = receiving else { return }
            receiving = nil
            queue.append(incoming)
            startNext(context: context)
        }
    }

    func read(context: ChannelHandlerContext) {
        if queue.count >= Self.maxQueued {
            readPending = true
        } else {
            context.read()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        queue.removeAll()
        receiving = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        shared.logger.debug("connection error: \(error)")
        context.close(promise: nil)
    }

    private func startNext(context: ChannelHandlerContext) {
        guard !busy, !upgraded, context.channel.isActive, let incoming = queue.popFirst() else { return }
        busy = true
        if readPending {
            readPending = false
            context.read()
        }
        let head = incoming.head
        let request = Request(
            application: shared.application, method: head.method, url: URI(path: head.uri), version: head.version,
            headersNoUpdate: head.headers, collectedBody: incoming.body, remoteAddress: remoteAddress,
            logger: shared.logger, byteBufferAllocator: context.channel.allocator, on: context.eventLoop)
        let responder = incoming.tooLarge ? shared.tooLarge : shared.responder
        // Each answer is counted with the responder's own time (see RequestRecorder), before the
        // hop back to this connection's loop.
        let started = NIODeadline.now()
        responder.respond(to: request).always { result in
            let status = (try? result.get())?.status.code ?? 500
            RequestRecorder.shared.record(status: Int(status), microseconds: (NIODeadline.now() - started).nanoseconds / 1000)
        }.hop(to: context.eventLoop).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let response):
                self.write(response, for: request, head: head, context: context)
            case .failure(let error):
                self.shared.logger.report(error: error)
                var headers = HTTPHeaders()
                headers.add(name: "content-length", value: "0")
                headers.add(name: "connection", value: "close")
                context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .internalServerError, headers: headers))), promise: nil)
                self.end(context: context)
            }
        }
    }

    private func write(_ response: Response, for request: Request, head requestHead: HTTPRequestHead, context: ChannelHandlerContext) {
        if response.status == .switchingProtocols, let upgrader = response.upgrader {
            upgrade(response, with: upgrader, for: request, head: requestHead, context: context)
            return
        }
        var headers = response.headers
        headers.add(name: "date", value: date.now())
        if let serverName = shared.serverName { headers.add(name: "server", value: serverName) }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: requestHead.version, status: response.status, headers: headers))), promise: nil)

        if requestHead.method == .HEAD || response.status == .noContent || response.status == .notModified {
            end(context: context)
        } else if let buffer = response.body.buffer {
            if buffer.readableBytes > 0 { context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil) }
            end(context: context)
        } else if response.body.count == 0 {
            end(context: context)
        } else if let stream = StreamingBody(response.body) {
            let writer = ChannelBodyWriter(handler: self, context: context)
            switch stream {
            case .callback(let callback):
                callback(writer)
            case .async(let callback):
                Task {
                    do {
                        try await callback(writer)
                        try? await writer.write(.end)  // ignored (apiMisuse) when the producer ended it
                    } catch {
                        try? await writer.write(.error(error))
                    }
                }
            }
        } else {
            let warned = shared.streamFallbackWarning.withLockedValue { warned in
                defer { warned = true }
                return warned
            }
            if !warned {
                shared.logger.warning("this Vapor version stores streaming bodies where BatonVapor cannot reach them: streamed responses are buffered")
            }
            response.body.collect(on: context.eventLoop).assumeIsolated().whenComplete { result in
                switch result {
                case .success(let buffer):
                    if let buffer, buffer.readableBytes > 0 { context.write(self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil) }
                    self.end(context: context)
                case .failure(let error):
                    self.streamFailed(error, context: context)
                }
            }
        }
    }

    /// The response is complete: flush it and answer the next request.
    fileprivate func end(context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        busy = false
        startNext(context: context)
    }

    /// A streaming body failed midway: the response cannot be completed, so the connection ends
    /// (the client sees a truncated body, not a complete wrong one).
    fileprivate func streamFailed(_ error: any Error, context: ChannelHandlerContext) {
        shared.logger.debug("response body stream failed: \(error)")
        busy = false
        queue.removeAll()
        context.close(promise: nil)
    }

    fileprivate func writeBody(_ buffer: ByteBuffer, context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: promise)
    }

    /// What Vapor's internal `HTTPServerUpgradeHandler` does: answer with the upgrader's headers,
    /// take the HTTP handlers out, and hand the channel to the protocol upgrader (WebSocket).
    private func upgrade(_ response: Response, with upgrader: any Upgrader, for request: Request,
                         head: HTTPRequestHead, context: ChannelHandlerContext) {
        upgraded = true
        let protocolUpgrader = upgrader.applyUpgrade(req: request, res: response)
        let handlers = httpHandlers
        let responseHead = HTTPResponseHead(version: head.version, status: .switchingProtocols, headers: response.headers)
        protocolUpgrader.buildUpgradeResponse(channel: context.channel, upgradeRequest: head, initialResponseHeaders: [:])
            .hop(to: context.eventLoop).assumeIsolated()
            .flatMap { headers -> EventLoopFuture<Void> in
                var responseHead = responseHead
                responseHead.headers = headers
                context.write(self.wrapOutboundOut(.head(responseHead)), promise: nil)
                return context.writeAndFlush(self.wrapOutboundOut(.end(nil)))
            }
            .flatMapThrowing { _ in
                let pipeline = context.pipeline.syncOperations
                for handler in handlers { pipeline.removeHandler(handler, promise: nil) }
            }
            .flatMap { _ in protocolUpgrader.upgrade(context: context, upgradeRequest: head) }
            .flatMapThrowing { _ in
                // A WebSocket's drain (BatonNIO's WebSocketDrainHandler: 1001 over the close
                // window, at a quiet moment) is added by the socket handler when the drain comes.
                context.pipeline.syncOperations.removeHandler(self, promise: nil)
            }
            .whenFailure { error in
                self.shared.logger.debug("upgrade failed: \(error)")
                context.close(promise: nil)
            }
    }
}

/// The writer a streaming `Response.Body` produces into: each buffer is written and flushed at
/// once; `.end` completes the response, `.error` ends the connection.
private final class ChannelBodyWriter: BodyStreamWriter, AsyncBodyStreamWriter {
    enum Failure: Error { case apiMisuse }

    let eventLoop: any EventLoop
    private let bound: NIOLoopBound<(VaporHTTPHandler, ChannelHandlerContext)>
    private let done: NIOLoopBoundBox<Bool>

    init(handler: VaporHTTPHandler, context: ChannelHandlerContext) {
        self.eventLoop = context.eventLoop
        self.bound = NIOLoopBound((handler, context), eventLoop: context.eventLoop)
        self.done = NIOLoopBoundBox(false, eventLoop: context.eventLoop)
    }

    func write(_ result: BodyStreamResult, promise: EventLoopPromise<Void>?) {
        if eventLoop.inEventLoop {
            writeOnLoop(result, promise: promise)
        } else {
            eventLoop.execute { self.writeOnLoop(result, promise: promise) }
        }
    }

    func write(_ result: BodyStreamResult) async throws {
        let promise = eventLoop.makePromise(of: Void.self)
        write(result, promise: promise)
        try await promise.futureResult.get()
    }

    private func writeOnLoop(_ result: BodyStreamResult, promise: EventLoopPromise<Void>?) {
        let (handler, context) = bound.value
        guard !done.value else {
            promise?.fail(Failure.apiMisuse)
            return
        }
        switch result {
        case .buffer(let buffer):
            handler.writeBody(buffer, context: context, promise: promise)
        case .end:
            done.value = true
            handler.end(context: context)
            promise?.succeed()
        case .error(let error):
            done.value = true
            handler.streamFailed(error, context: context)
            promise?.fail(error)
        }
    }
}
