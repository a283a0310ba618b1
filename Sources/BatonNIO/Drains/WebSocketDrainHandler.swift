import NIOCore
import NIOWebSocket

/// How a drain closes WebSocket connections (``DrainConfiguration``).
public struct WebSocketDrainSettings: Sendable {
    /// The closes are spread over this window, each connection at a random moment in it:
    /// thousands of clients reconnecting at once would stall the new generation on a busy core.
    public var window: TimeAmount
    /// How long the app's drain handlers (``BatonDrain``) may run before the close.
    public var hookTimeout: TimeAmount
    /// How long a client the app has told of the drain may take to close by itself, and then how
    /// long to wait for a moment when no client message is waiting for its answer.
    public var quietWait: TimeAmount
    /// How long the client has to answer the close before the connection is closed anyway.
    public var closeTimeout: TimeAmount

    /// Settings with these bounds; ``DrainConfiguration`` holds the defaults (5 s, 1 s, 1 s, 5 s).
    public init(window: TimeAmount, hookTimeout: TimeAmount, quietWait: TimeAmount, closeTimeout: TimeAmount) {
        self.window = window
        self.hookTimeout = hookTimeout
        self.quietWait = quietWait
        self.closeTimeout = closeTimeout
    }
}

/// The drain of a WebSocket connection: a close frame with code 1001 (going away), at a random
/// moment of the drain's window, after the app's drain handlers, at a quiet moment; then the
/// closing handshake, within a bound.
///
/// Added by the ``ConnectionSocketHandler`` when a drain reaches an upgraded connection, right
/// after the WebSocket frame decoder: it sees every frame the client sends and every frame the
/// app writes.
///
/// - **A client told first.** When the app's drain handler ran (it may have told its client to
///   move, as `hello`'s `/ws` does), the client gets `quietWait` to close by itself: one that
///   stops writing there and closes once its last answers are in loses nothing. Its close is
///   answered as any other, with no 1001.
/// - **Quiet moment.** A client message that crosses the close cannot be answered (RFC 6455
///   §5.5.1: no data frame after a close). So a client that has sent something within
///   `quietWait` gets the close right after the app's next prompt answer to it (within 20 ms of
///   the message, nothing unanswered, no input waiting unread): the moment its next message is
///   furthest away. A quiet client gets it at once; a busy one after `quietWait` at the latest
///   (then a message may cross the close).
/// - **After the close** the app's frames are dropped (the framework's library does not know a
///   close was sent, and would answer the client's close with another); the client's close
///   answer ends the connection (through TLS for wss), or `closeTimeout` does.
/// - A drain called off before the close cancels it; once sent, it stands.
public final class WebSocketDrainHandler: ChannelDuplexHandler, RemovableChannelHandler {
    /// The client's frames, from the WebSocket frame decoder.
    public typealias InboundIn = WebSocketFrame
    /// The same, passed on to the app's WebSocket handler.
    public typealias InboundOut = WebSocketFrame
    /// The app's frames; dropped once the close has been sent.
    public typealias OutboundIn = WebSocketFrame
    /// The app's frames, and the close 1001.
    public typealias OutboundOut = WebSocketFrame

    private enum State {
        case open
        /// Told of the drain: the close comes at the scheduled moment.
        case scheduled(Scheduled<Void>, at: NIODeadline)
        /// The app's drain handlers run.
        case notifying
        /// The app told its client: waiting for the client's close, until the deadline.
        case awaitingClientClose(Scheduled<Void>)
        /// Waiting for a quiet moment, until the deadline.
        case awaitingQuiet(Scheduled<Void>)
        case closeSent
        /// The client closed first: its close is answered by the app's library, not by a 1001.
        case closedByClient
    }

    private let settings: WebSocketDrainSettings
    private let activity: ConnectionActivity
    private var state = State.open
    /// A client data frame came after the app last wrote one.
    private var unanswered = false
    /// When the client's last data frame came.
    private var lastInbound = NIODeadline.uptimeNanoseconds(0)
    private var closeTimer: Scheduled<Void>?
    /// Frames the app wrote after the close, dropped.
    public private(set) var dropped = 0

    init(settings: WebSocketDrainSettings, activity: ConnectionActivity) {
        self.settings = settings
        self.activity = activity
    }

    /// Notes each client message as waiting for its answer; the client's answer to the close ends the
    /// connection (the server closes the TCP connection first).
    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary, .continuation:
            unanswered = true
            lastInbound = context.eventLoop.now
        case .connectionClose:
            switch state {
            case .closeSent:
                // The closing handshake is done: the server closes the TCP connection first.
                closeTimer?.cancel()
                closeTimer = nil
                context.triggerUserOutboundEvent(GracefulCloseEvent(), promise: nil)
                return
            case .scheduled(let timer, _), .awaitingClientClose(let timer), .awaitingQuiet(let timer):
                timer.cancel()
                state = .closedByClient
            case .notifying, .open:
                state = .closedByClient
            case .closedByClient:
                break
            }
        default:
            break
        }
        context.fireChannelRead(data)
    }

    /// Notes an app's data frame as the answer to the client's last message; drops frames written after
    /// the close.
    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .closeSent = state {
            dropped += 1
            promise?.succeed()
            return
        }
        switch unwrapOutboundIn(data).opcode {
        case .text, .binary, .continuation: unanswered = false
        default: break
        }
        context.write(data, promise: promise)
    }

    /// Flushes; a close that waits for a quiet moment goes right after a prompt answer.
    public func flush(context: ChannelHandlerContext) {
        context.flush()
        // An answer that went out soon after the message it answers: the client's next message
        // is as far away as it gets. A late answer (a busy loop) is no such moment: the client
        // may well have sent its next message already.
        if case .awaitingQuiet = state, isQuiet, context.eventLoop.now - lastInbound <= Self.freshAnswer {
            sendClose(context: context)
        }
    }

    /// How soon after the client's message its answer must go out to count as a quiet moment.
    static let freshAnswer = TimeAmount.milliseconds(20)

    private var isQuiet: Bool { !unanswered && activity.pendingInput == 0 }

    /// Schedules the close at a random moment of the window on ``DrainConnectionEvent``, moves it within
    /// a fifth of the window on ``HurryDrainEvent``, and cancels a close not yet sent on
    /// ``ResumeConnectionEvent``.
    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case is DrainConnectionEvent:
            guard case .open = state else { return }
            schedule(within: settings.window, context: context)
        case is HurryDrainEvent:
            // Still spread, over a fifth of the window: a hurried generation's clients would
            // otherwise all reconnect at the same moment.
            let hurried = TimeAmount.nanoseconds(settings.window.nanoseconds / 5)
            if case .scheduled(let timer, let at) = state, at > context.eventLoop.now + hurried {
                timer.cancel()
                schedule(within: hurried, context: context)
            }
        case is ResumeConnectionEvent:
            if case .scheduled(let timer, _) = state {
                timer.cancel()
                state = .open
            }
        case is ShareConnectionEvent:
            break  // a WebSocket stays where it is
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    /// The close's moment: at random within `window` from now.
    private func schedule(within window: TimeAmount, context: ChannelHandlerContext) {
        let delay = TimeAmount.nanoseconds(window.nanoseconds > 0 ? .random(in: 0..<window.nanoseconds) : 0)
        let timer = context.eventLoop.assumeIsolated().scheduleTask(in: delay) { self.notify(context: context) }
        state = .scheduled(timer, at: context.eventLoop.now + delay)
    }

    /// Runs the app's drain handlers (bounded), then waits for a quiet moment.
    private func notify(context: ChannelHandlerContext) {
        state = .notifying
        // Whether a handler ran (the app may have told its client); false when they overran.
        let told = context.eventLoop.makePromise(of: Bool.self)
        let notice = activity.drainNotice
        told.completeWithTask { await notice.fire() }
        let timeout = context.eventLoop.assumeIsolated().scheduleTask(in: settings.hookTimeout) { told.succeed(false) }
        told.futureResult.assumeIsolated().whenComplete { result in
            timeout.cancel()
            guard case .notifying = self.state, context.channel.isActive else { return }
            if (try? result.get()) == true {
                self.state = .awaitingClientClose(context.eventLoop.assumeIsolated().scheduleTask(in: self.settings.quietWait) {
                    self.awaitQuiet(context: context)
                })
            } else {
                self.awaitQuiet(context: context)
            }
        }
    }

    /// A client that has sent nothing for `quietWait` is closed now; one that talks is closed
    /// right after its next answer, which is when its next message is furthest away.
    private func awaitQuiet(context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        if isQuiet, context.eventLoop.now - lastInbound >= settings.quietWait { return sendClose(context: context) }
        state = .awaitingQuiet(context.eventLoop.assumeIsolated().scheduleTask(in: settings.quietWait) { self.sendClose(context: context) })
    }

    private func sendClose(context: ChannelHandlerContext) {
        switch state {
        case .awaitingQuiet(let timer), .awaitingClientClose(let timer): timer.cancel()
        case .closeSent, .closedByClient: return
        case .open, .scheduled, .notifying: break
        }
        state = .closeSent
        var code = context.channel.allocator.buffer(capacity: 2)
        code.write(webSocketErrorCode: .goingAway)
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: code)), promise: nil)
        closeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: settings.closeTimeout) {
            context.triggerUserOutboundEvent(GracefulCloseEvent(), promise: nil)
        }
    }

    /// Cancels the close's timers of a connection that has closed.
    public func channelInactive(context: ChannelHandlerContext) {
        switch state {
        case .scheduled(let timer, _), .awaitingQuiet(let timer), .awaitingClientClose(let timer): timer.cancel()
        default: break
        }
        closeTimer?.cancel()
        closeTimer = nil
        context.fireChannelInactive()
    }
}

/// Tells a draining connection to close soon rather than at its moment of the drain's spread
/// (too many generations are draining at once): a WebSocket within a fifth of its close window.
public struct HurryDrainEvent: Sendable {
    /// A hurry order; it carries nothing.
    public init() {}
}
