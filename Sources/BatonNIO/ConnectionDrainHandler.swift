import Baton
import NIOCore
import NIOHTTP1

/// Tells one connection that its worker is draining, and where keep-alive connections go, if
/// the next generation takes them.
public struct DrainConnectionEvent: Sendable {
    /// The next generation's inbox; nil: close keep-alive connections gracefully.
    public var handoff: ConnectionHandoff?

    /// Orders a drain that hands keep-alive connections to `handoff`, or closes them gracefully when nil.
    public init(handoff: ConnectionHandoff? = nil) {
        self.handoff = handoff
    }
}

/// Tells one connection of the serving generation to move to the canary of a canary upgrade:
/// it goes at its next request boundary, as in a drain's hand-over; if that cannot happen (the
/// canary's share ended, its inbox is gone), it simply stays.
public struct ShareConnectionEvent: Sendable {
    /// The canary's inbox.
    public var handoff: ConnectionHandoff

    /// Orders the connection over to the canary's inbox.
    public init(handoff: ConnectionHandoff) {
        self.handoff = handoff
    }
}

/// Calls a drain off for one connection: the worker's successor died, and this generation
/// serves again (see `Baton.WorkerOrder.resume`).
public struct ResumeConnectionEvent: Sendable {
    /// A resume order; it carries nothing.
    public init() {}
}

/// Ends a keep-alive connection without a client ever seeing an error, and keeps HTTP/1.1's
/// connection semantics that Hummingbird leaves out.
///
/// Sits in the HTTP/1 part of the pipeline (it needs the request's version), above a
/// ``ConnectionSocketHandler`` whose ``ConnectionActivity`` it reads. On ``DrainConnectionEvent``:
/// - a request in flight gets `Connection: close` on its response, and the connection closes
///   (gracefully: output first) once that response is written;
/// - a request that is arriving (bytes read, head not complete yet) is waited for and answered
///   the same way;
/// - an idle connection stays open for its next request, answered with `Connection: close`
///   (HAProxy's `idle-close-on-response`). It is closed only once it has been quiet since its
///   last request or response for `idleGrace`, and for twice the longest pause its client has
///   made so far (a busy client on a loaded machine may pause longer than any fixed grace), *and*
///   nothing waits unread in the kernel: on a saturated event loop a request can sit in the
///   receive buffer long before NIO reads it, and closing then would reset it. The remaining
///   race — a client sending at the very moment the server closes a connection that was quiet
///   that long — is HTTP/1.1's own (RFC 9112 §9.6).
///
/// With a ``ConnectionHandoff`` in the event (the next generation takes connections), responses
/// keep the connection alive instead, and the connection is handed to the next generation as
/// soon as it is idle at a request boundary: no request in flight or arriving, the last response
/// written, nothing of a next request read (see ``ConnectionActivity/atRequestBoundary``) and
/// none waiting unread in the kernel (that one is answered here first).
/// A busy connection goes after its response; one that stays idle but not at a boundary, or is
/// still here when the hand-over window ends or the hand-over fails, is closed as above.
///
/// On ``ShareConnectionEvent`` (a canary upgrade): the connection goes to the canary as it would
/// in a hand-over, and stays here when it cannot.
///
/// On ``ResumeConnectionEvent`` (the drain is called off) the connection serves on as before the
/// drain, unless it is closing already.
///
/// Every answer is counted in `RequestRecorder.shared` (status, and the time from the request's
/// head to the response's end), which judges a canary, unless the adapter counts them itself
/// with its responder's time (`RequestRecorder.timesResponders`).
///
/// A `101 Switching Protocols` response (a WebSocket upgrade) goes out as it is, and the handler
/// then leaves the pipeline: what follows is not HTTP.
///
/// Always: a request with `Connection: close` gets it echoed and the connection closes after
/// the response; an HTTP/1.0 request without keep-alive is closed after its response; an
/// HTTP/1.0 keep-alive request gets `Connection: keep-alive` back.
public final class ConnectionDrainHandler: ChannelDuplexHandler, RemovableChannelHandler {
    /// Request parts, from NIO's HTTP/1 decoder below.
    public typealias InboundIn = HTTPServerRequestPart
    /// Request parts, passed on unchanged to the app's handler above.
    public typealias InboundOut = HTTPServerRequestPart
    /// Response parts from the app; a draining connection's next head gets `Connection: close`.
    public typealias OutboundIn = HTTPServerResponsePart
    /// Response parts, on their way to NIO's HTTP/1 encoder.
    public typealias OutboundOut = HTTPServerResponsePart

    private struct PendingRequest {
        var keepAlive: Bool
        var isHTTP10: Bool
        /// When its head was read.
        var started: NIODeadline
    }

    private let idleGrace: TimeAmount
    /// Counts answers in ``RequestRecorder/shared`` (the adapter does not).
    private let countsAnswers = !RequestRecorder.shared.timesResponders
    private var activity: ConnectionActivity!
    /// Requests whose response has not ended yet, oldest first.
    private var pending: [PendingRequest] = []
    private var draining = false
    /// The status of the response being written.
    private var responseStatus = 200
    private var responseCloses = false
    private var closing = false
    /// A 101 was written: the handler leaves at the next flush.
    private var upgraded = false
    private var idleCheck: Scheduled<Void>?
    /// Where this connection goes when it is idle, while draining with a hand-over.
    private var handoff: ConnectionHandoff?
    /// Response ends written but not yet on the wire.
    private var unwrittenEnds = 0
    private var handOverRetry: Scheduled<Void>?
    /// The wait before trying again when the inbox is full, doubled at each try (the next
    /// generation reads its inbox as fast as it can set connections up; thousands of
    /// connections retrying every millisecond would slow it down).
    private var fullInboxBackoff: TimeAmount = .milliseconds(1)

    /// A handler that closes a draining connection once it has been idle for `idleGrace`.
    public init(idleGrace: TimeAmount = .seconds(1)) {
        self.idleGrace = idleGrace
    }

    /// Finds the connection's ``ConnectionSocketHandler`` (adding one without a descriptor when the
    /// pipeline has none) and shares its ``ConnectionActivity``.
    public func handlerAdded(context: ChannelHandlerContext) {
        // The socket end does the closing; a pipeline built without one gets one (no descriptor,
        // so no pending-input checks).
        let pipeline = context.pipeline.syncOperations
        let socket = (try? pipeline.context(name: ConnectionSocketHandler.name))?.handler as? ConnectionSocketHandler
            ?? (try? pipeline.handler(type: ConnectionSocketHandler.self)) ?? {
            let added = ConnectionSocketHandler(fd: nil)
            try? pipeline.addHandler(added, name: ConnectionSocketHandler.name, position: .first)
            return added
        }()
        activity = socket.activity
    }

    /// Follows each request from its head to its end: a connection with a request under way is
    /// neither handed over nor closed as idle.
    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            pending.append(PendingRequest(keepAlive: head.isKeepAlive, isHTTP10: head.version == .http1_0, started: context.eventLoop.now))
            idleCheck?.cancel()
            idleCheck = nil
            activity.lastBodyChunk = nil
            // A head read after the end of the last request, in the same read, is a request
            // arriving too: the bytes read then end inside it, not at a request boundary.
            activity.requestArriving = true
        case .body(let chunk):
            activity.lastBodyChunk = chunk
        case .end:
            activity.requestArriving = false
            activity.requestsEnded += 1
        }
        context.fireChannelRead(data)
    }

    /// Sets `Connection: close` on a response the connection ends with (a drain, the client's own
    /// `Connection: close`, HTTP/1.0 without keep-alive), and notes an upgrade (101) to WebSocket.
    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head):
            if head.status == .switchingProtocols {
                // An upgrade (WebSocket): the upgrade handler has taken the HTTP decoder out, and
                // what comes next is not HTTP. The 101 goes as it is, and this handler leaves
                // once it is flushed (not here: a writeAndFlush calls this handler's flush next,
                // which must still pass it on). The client sends nothing before it reads the 101.
                upgraded = true
                activity.count(as: activity.isTLS ? .wss : .ws)
                context.write(data, promise: promise)
                return
            }
            let request = pending.first ?? PendingRequest(keepAlive: true, isHTTP10: false, started: context.eventLoop.now)
            responseStatus = Int(head.status.code)
            let appCloses = head.headers[canonicalForm: "connection"].contains { $0.lowercased() == "close" }
            // A pipelined request already waiting gets its answer first: the last one closes.
            responseCloses = (draining && handoff == nil && pending.count <= 1) || !request.keepAlive || appCloses
            if responseCloses {
                head.headers.replaceOrAdd(name: "connection", value: "close")
            } else if request.isHTTP10 {
                head.headers.replaceOrAdd(name: "connection", value: "keep-alive")
            }
            context.write(wrapOutboundOut(.head(head)), promise: promise)
        case .body:
            context.write(data, promise: promise)
        case .end:
            if !pending.isEmpty {
                let answered = pending.removeFirst()
                if countsAnswers {
                    RequestRecorder.shared.record(status: responseStatus, microseconds: (context.eventLoop.now - answered.started).nanoseconds / 1000)
                }
            }
            activity.lastActivity = context.eventLoop.now
            if responseCloses {
                closing = true
                let written = promise ?? context.eventLoop.makePromise()
                context.writeAndFlush(data, promise: written)
                written.futureResult.assumeIsolated().whenComplete { _ in
                    context.triggerUserOutboundEvent(GracefulCloseEvent(), promise: nil)
                }
            } else if handoff != nil {
                // Hand the connection over once this response is on the wire.
                unwrittenEnds += 1
                let written = promise ?? context.eventLoop.makePromise()
                context.write(data, promise: written)
                written.futureResult.assumeIsolated().whenComplete { _ in
                    self.unwrittenEnds -= 1
                    self.handOverRetry?.cancel()  // this is the moment to try
                    self.handOverRetry = nil
                    self.handOverIfIdle(context: context)
                }
            } else {
                context.write(data, promise: promise)
                // The response began before the drain, without `Connection: close`: the client
                // may send another request, which is answered with it.
                if draining && pending.isEmpty { scheduleIdleCheck(context: context) }
            }
        }
    }

    /// Flushes; after an upgrade to WebSocket this handler leaves the pipeline (a drain under way
    /// goes on with the WebSocket's own).
    public func flush(context: ChannelHandlerContext) {
        context.flush()
        guard upgraded else { return }
        // Upgraded while draining (a client that reconnected to a generation about to drain):
        // the WebSocket gets its own drain once the upgrade has put its handlers in.
        if draining { DrainHandlers.drainOnceUpgraded(context.channel) }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    /// Takes the drain's orders: ``DrainConnectionEvent`` (hand over or close at the next request
    /// boundary), ``ShareConnectionEvent`` (move to a canary) and ``ResumeConnectionEvent`` (serve on).
    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let share = event as? ShareConnectionEvent {
            guard !draining, handoff == nil, activity.fd != nil, !activity.isTLS, share.handoff.takes(listener: activity.listener) else { return }
            handoff = share.handoff
            handOverIfIdle(context: context)
            return
        }
        if event is ResumeConnectionEvent {
            guard draining else { return }
            draining = false
            handoff = nil
            handOverRetry?.cancel()
            handOverRetry = nil
            idleCheck?.cancel()
            idleCheck = nil
            fullInboxBackoff = .milliseconds(1)
            return
        }
        guard let drain = event as? DrainConnectionEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        guard !draining else { return }
        draining = true
        // On its way to a canary: the drain decides where it goes now.
        handoff = nil
        handOverRetry?.cancel()
        handOverRetry = nil
        if let next = drain.handoff, activity.fd != nil, !activity.isTLS, next.takes(listener: activity.listener) {
            // The event comes at this connection's moment within the hand-over's spread
            // (the registry paces it): it goes now, or at its next request boundary.
            handoff = next
            handOverIfIdle(context: context)
        } else if pending.isEmpty {
            scheduleIdleCheck(context: context)
        }
    }

    /// Cancels the idle check and any hand-over retry of a closed connection.
    public func channelInactive(context: ChannelHandlerContext) {
        idleCheck?.cancel()
        idleCheck = nil
        handOverRetry?.cancel()
        handOverRetry = nil
        context.fireChannelInactive()
    }

    /// Hands the connection over if it is idle at a request boundary now; otherwise a later
    /// event (a response written, a timer) calls again.
    private func handOverIfIdle(context: ChannelHandlerContext) {
        guard let next = handoff, !closing, pending.isEmpty, unwrittenEnds == 0, handOverRetry == nil else { return }
        guard next.takes(listener: activity.listener) else { return fallBack(context: context) }
        guard !activity.requestArriving, activity.atRequestBoundary else {
            // Part of a next request may be read already (or one is arriving): it is answered
            // here, and the connection goes after that answer. If nothing completes it, close.
            return retryHandOver(context: context, in: max(idleGrace, activity.longestPause * 2), thenFallBack: true)
        }
        // The client's next request waits in the kernel already: it is answered here, and the
        // connection goes after that answer (this is called again then). Sent on now, it would
        // queue a second time behind every connection of a next generation that is busy taking
        // the others; at 10,000 connections with an upgrade every 2 s such requests waited 2-4 s
        // there, were passed on again unread when that generation drained in turn, and some
        // took over 10 s.
        guard activity.pendingInput == 0 else { return }
        closing = true
        let promise = context.eventLoop.makePromise(of: Void.self)
        promise.futureResult.assumeIsolated().whenFailure { error in
            self.closing = false
            if let failure = error as? HandOverFailure, case .full = failure.outcome {
                self.retryHandOver(context: context, in: self.fullInboxBackoff, thenFallBack: false)
                self.fullInboxBackoff = min(self.fullInboxBackoff * 2, .milliseconds(64))
            } else {
                self.fallBack(context: context)
            }
        }
        context.triggerUserOutboundEvent(HandOverEvent(handoff: next), promise: promise)
    }

    /// Tries again after `delay`; with `thenFallBack`, closes gracefully if nothing changed.
    private func retryHandOver(context: ChannelHandlerContext, in delay: TimeAmount, thenFallBack: Bool) {
        let endedBefore = activity.requestsEnded
        handOverRetry = context.eventLoop.assumeIsolated().scheduleTask(in: delay) {
            self.handOverRetry = nil
            if thenFallBack, self.activity.requestsEnded == endedBefore, self.pending.isEmpty, !self.activity.atRequestBoundary {
                self.fallBack(context: context)
            } else {
                self.handOverIfIdle(context: context)
            }
        }
    }

    /// No hand-over for this connection: the graceful close of a drain without one (or, when it
    /// was to move to a canary, it stays).
    private func fallBack(context: ChannelHandlerContext) {
        guard let next = handoff else { return }
        handoff = nil
        next.fellBack()
        handOverRetry?.cancel()
        handOverRetry = nil
        if draining && pending.isEmpty { scheduleIdleCheck(context: context) }
    }

    /// When the connection counts as idle if nothing happens until then.
    private var idleAt: NIODeadline {
        activity.lastActivity + max(idleGrace, activity.longestPause * 2)
    }

    private func scheduleIdleCheck(context: ChannelHandlerContext, notBefore earliest: NIODeadline? = nil) {
        guard !closing, idleCheck == nil else { return }
        let deadline = max(idleAt, earliest ?? .uptimeNanoseconds(0))
        idleCheck = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            self.idleCheck = nil
            self.closeIfIdle(context: context)
        }
    }

    /// Closes the connection if it is idle by every measure; otherwise looks again later.
    private func closeIfIdle(context: ChannelHandlerContext) {
        // A request in flight or arriving: its response carries `Connection: close`.
        guard !closing, pending.isEmpty, !activity.requestArriving else { return }
        let now = context.eventLoop.now
        if now < idleAt {
            scheduleIdleCheck(context: context)
        } else if activity.pendingInput > 0 {
            // A request waits in the kernel for this busy loop to read it: serve it, don't reset it.
            scheduleIdleCheck(context: context, notBefore: now + idleGrace)
        } else {
            closing = true
            context.triggerUserOutboundEvent(GracefulCloseEvent(), promise: nil)
        }
    }
}
