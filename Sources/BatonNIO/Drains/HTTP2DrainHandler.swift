import NIOCore
import NIOHTTP2

/// The drain of an HTTP/2 connection (h2c, or h2 over TLS): the graceful two-step GOAWAY of
/// RFC 9113 §6.8. A first GOAWAY with the largest stream id and a PING tell the client to open
/// no more streams here; once the PING's ack shows that the client has seen it, a second GOAWAY
/// names the last stream this connection will serve. Streams in flight finish on this
/// generation; new ones go to a new connection, which the next generation accepts. The
/// connection closes when its last stream has ended (or at the drain deadline).
///
/// The first step is Baton's, written below `NIOHTTP2Handler` by an `HTTP2FrameWriter` (see
/// there why NIO must not know of it): GOAWAY(2^31-1) and a PING. When the client's ack comes
/// (or after `announceTimeout`), the rest is the framework's: Hummingbird's connection manager
/// sends its GOAWAY(2^31-1) and PING, then GOAWAY(last stream), on `ChannelShouldQuiesceEvent`.
/// This handler sits right after `NIOHTTP2Handler` and fires that event *from its own context*,
/// so that it reaches the connection manager only: fired through `NIOHTTP2Handler` it would also
/// reach every open stream, whose HTTP handler answers it by resetting any stream without a
/// request in progress.
///
/// Every close the framework asks for above this handler becomes a graceful one: the frames
/// written so far are flushed (Hummingbird closes while the last stream's frames are being
/// written: the close waits for them), then the socket's ``ConnectionSocketHandler`` shuts down the
/// output and reads until the client closes (or its linger timeout). Closed at once, a socket
/// with unread input (the client's PING ack, a WINDOW_UPDATE) sends a reset, and the reset
/// destroys the last stream's response before the client has read it: Hummingbird closes the
/// connection the moment its last stream ends. Under TLS the close goes on as it is: NIOSSL
/// sends close_notify and reads until the client's, which does the same.
///
/// A drain called off (``ResumeConnectionEvent``) cannot take a GOAWAY back: the connection ends
/// as it would have, and its client's next connection goes to the generation that serves again.
/// HTTP/2 connections are never handed over (their HPACK and stream state live in this process)
/// and never passed to a canary.
public final class HTTP2DrainHandler: ChannelDuplexHandler, RemovableChannelHandler {
    /// HTTP/2 frames from `NIOHTTP2Handler` (and whatever else passes).
    public typealias InboundIn = Any
    /// The same, less the ack of Baton's own PING.
    public typealias InboundOut = Any
    /// Whatever the framework writes, passed on unchanged.
    public typealias OutboundIn = Any
    /// The same.
    public typealias OutboundOut = Any

    private enum State {
        case serving
        /// Baton's GOAWAY and PING are out; the framework's GOAWAYs follow the ack.
        case announced(Scheduled<Void>)
        case quiesced
    }

    private var state = State.serving
    /// Writes Baton's own first GOAWAY below NIO (nil: the framework's GOAWAYs alone).
    private let writer: HTTP2FrameWriter?
    private let announceTimeout: TimeAmount
    /// The connection's socket end, when there is one (not in some tests).
    private var activity: ConnectionActivity?
    /// The graceful close has been asked of the socket handler.
    private var closeRequested = false

    /// A handler that leaves both steps of the GOAWAY to the framework's connection manager (no frame
    /// writer of Baton's own below NIO).
    public convenience init() {
        self.init(writer: nil)
    }

    init(writer: HTTP2FrameWriter?, announceTimeout: TimeAmount = .seconds(1)) {
        self.writer = writer
        self.announceTimeout = announceTimeout
    }

    /// Finds the connection's ``ConnectionActivity``, to close through TLS or gracefully.
    public func handlerAdded(context: ChannelHandlerContext) {
        activity = (try? context.pipeline.syncOperations.handler(type: ConnectionSocketHandler.self))?.activity
    }

    /// Stops the ack of Baton's own PING (the client has read the first GOAWAY) and starts the
    /// framework's quiescing; passes every other frame on.
    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // The ack of Baton's own PING: the client has read its GOAWAY. NIO passes it on as any
        // PING ack; the framework never sent it, so it stops here.
        if let frame = unwrapInboundIn(data) as? HTTP2Frame, frame.streamID == .rootStream,
           case .ping(let ping, ack: true) = frame.payload, ping.integer == HTTP2FrameWriter.pingData {
            if case .announced = state { quiesce(context: context) }
            return
        }
        context.fireChannelRead(data)
    }

    private func quiesce(context: ChannelHandlerContext) {
        if case .announced(let timeout) = state { timeout.cancel() }
        if case .quiesced = state { return }
        state = .quiesced
        context.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
    }

    /// Starts the two-step GOAWAY on ``DrainConnectionEvent``; ignores resume and share orders (an
    /// HTTP/2 connection neither moves nor takes a GOAWAY back).
    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case is DrainConnectionEvent:
            guard case .serving = state else { return }
            guard let writer, writer.announceGoAway() else { return quiesce(context: context) }
            // A client that does not answer PINGs gets the framework's GOAWAYs anyway.
            state = .announced(context.eventLoop.assumeIsolated().scheduleTask(in: announceTimeout) { self.quiesce(context: context) })
        case is ResumeConnectionEvent, is ShareConnectionEvent:
            break
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    /// Makes the framework's close a graceful one: it waits until the last stream's frames are written
    /// and flushed, then closes through TLS or with a lingering close.
    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        // The socket handler's close through TLS comes back through here: it goes on down.
        guard mode == .all, context.channel.isActive, !closeRequested else { return context.close(mode: mode, promise: promise) }
        // Hummingbird closes from the stream delegate, called while NIOHTTP2Handler is still
        // writing the last stream's END_STREAM frame: closed now, the connection would lose that
        // frame (and its DATA before the flush). So the close waits for this loop turn to end.
        context.eventLoop.assumeIsolated().execute {
            guard context.channel.isActive else {
                promise?.succeed()
                return
            }
            context.flush()
            // Without the socket handler (no activity) nothing would carry out the event.
            guard self.activity != nil else { return context.close(mode: mode, promise: promise) }
            // The socket handler closes: lingering, or under TLS back through this pipeline
            // (close_notify), the socket closing `lingerTimeout` later if the client sends none.
            self.closeRequested = true
            context.triggerUserOutboundEvent(GracefulCloseEvent(), promise: nil)
            if let promise { context.channel.closeFuture.cascade(to: promise) }
        }
    }
}
