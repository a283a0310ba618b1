import CBaton
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// Asks the ``ConnectionSocketHandler`` of a connection to close it without losing anything the
/// client sent or was sent (a lingering close). Send it with `triggerUserOutboundEvent`.
public struct GracefulCloseEvent: Sendable {
    /// A graceful-close request; it carries nothing.
    public init() {}
}

/// Asks the ``ConnectionSocketHandler`` of a connection to send its socket to the next
/// generation through `handoff` and close this process's descriptor. The promise fails with
/// ``ConnectionHandoff/Outcome`` `.full` (try again) or `.closed` (close gracefully instead).
struct HandOverEvent: Sendable {
    let handoff: ConnectionHandoff
}

/// Why a ``HandOverEvent`` did not hand the connection over.
struct HandOverFailure: Error {
    let outcome: ConnectionHandoff.Outcome
}

/// What a connection's handlers know about its socket: when it was last used, whether a request
/// is arriving, and what waits unread in the kernel. Owned by the connection's event loop.
public final class ConnectionActivity {
    /// The connection's descriptor, or nil when unknown (tests; a channel Baton did not accept).
    public let fd: Int32?
    /// The position of the listener that accepted it (nil: unknown).
    public let listener: Int?
    /// When bytes last arrived or a response was last completed.
    public internal(set) var lastActivity: NIODeadline
    /// Bytes arrived after the last complete request: the next request is on its way.
    public internal(set) var requestArriving = false
    /// The longest this client has been quiet between a response (or its connect) and its next
    /// request: how long its silence may last without meaning it is done.
    public internal(set) var longestPause: TimeAmount = .zero
    /// Every byte read so far belonged to a request read in full: the HTTP decoder holds nothing
    /// of a next request, so the socket can go to another process with nothing lost (what the
    /// client sent since waits in the kernel and travels with it).
    public internal(set) var atRequestBoundary = true
    /// The connection speaks TLS (``TLSActivityHandler`` keeps this activity from the plaintext):
    /// it cannot be handed over (its session lives in this process), and it closes through TLS.
    public internal(set) var isTLS = false
    /// How a drain closes this connection if it has become a WebSocket (nil: left to the
    /// drain deadline).
    var webSocketDrain: WebSocketDrainSettings?
    /// What the app code serving this connection learns of its drain (``BatonDrain``).
    public let drainNotice = DrainNotice()
    /// What it speaks, as counted in `census` (nil: not counted yet, or closed).
    public private(set) var kind: ConnectionKind?
    /// Where its kind is counted (the process's, or a test's).
    var census: ConnectionCensus = .shared

    /// Counts this connection as `kind` from now on (nil: closed).
    func count(as kind: ConnectionKind?) {
        census.move(from: self.kind, to: kind)
        self.kind = kind
    }
    /// Requests read in full (counted by the ``ConnectionDrainHandler``).
    var requestsEnded = 0
    /// The last body chunk decoded since the current read began, if any.
    var lastBodyChunk: ByteBuffer?

    init(fd: Int32?, listener: Int?) {
        self.fd = fd
        self.listener = listener
        self.lastActivity = .uptimeNanoseconds(0)
    }

    /// Bytes of a request arrived at `now` (read by the socket handler, or under TLS by the
    /// ``TLSActivityHandler`` from the plaintext): the pause before them counts, and a request
    /// is on its way until the HTTP drain handler sees its end.
    func requestBytesArrived(at now: NIODeadline) {
        if !requestArriving { longestPause = max(longestPause, now - lastActivity) }
        lastActivity = now
        requestArriving = true
    }

    /// Bytes in the socket's receive queue that NIO has not read yet: a connection that looks idle
    /// to a busy event loop may already hold its next request.
    public var pendingInput: Int {
        guard let fd else { return 0 }
        return max(0, Int(baton_pending_input(fd)))
    }
}

/// The socket end of a Baton connection's pipeline (added first). It tracks activity for the
/// drain rules and performs the graceful close they ask for.
///
/// A server that closes a socket with unread input makes the kernel send a reset, and the reset
/// can destroy the response the client has not read yet. So on ``GracefulCloseEvent``, when input
/// is arriving or waits unread, this handler shuts down the output only (the client reads the
/// response, then end-of-file), discards what the client still sends, and closes once the client
/// has closed its side or after `lingerTimeout` (nginx's `lingering_close`). With nothing pending
/// it closes at once, which costs nothing extra on the common path.
public final class ConnectionSocketHandler: ChannelDuplexHandler, RemovableChannelHandler {
    /// The socket's bytes, as NIO read them.
    public typealias InboundIn = ByteBuffer
    /// The same bytes, passed on unchanged to the TLS or HTTP decoder above.
    public typealias InboundOut = ByteBuffer
    /// Bytes to write, from the handlers above.
    public typealias OutboundIn = ByteBuffer
    /// The same bytes, passed on unchanged to the socket.
    public typealias OutboundOut = ByteBuffer

    /// Shared with the HTTP-level ``ConnectionDrainHandler``.
    public let activity: ConnectionActivity
    private let lingerTimeout: TimeAmount
    private var lingering = false
    private var closingThroughTLS = false
    private var lingerTimer: Scheduled<Void>?
    /// The previous generation handed this connection over, and may still hold a copy of it.
    private let handedOver: Bool

    /// The name it has in a pipeline, where other handlers look for it.
    public static let name = "baton.socket"

    /// A handler for the connection at `fd` (nil: unknown, no pending-input checks) that gives a
    /// client `lingerTimeout` to close its side after a graceful close. `handedOver`: the
    /// previous generation handed the connection over (see ``close(context:mode:promise:)``).
    public init(fd: Int32?, listener: Int? = nil, handedOver: Bool = false, lingerTimeout: TimeAmount = .seconds(2)) {
        self.activity = ConnectionActivity(fd: fd, listener: listener)
        self.lingerTimeout = lingerTimeout
        self.handedOver = handedOver
    }

    /// Starts the connection's clock: its first pause is measured from here.
    public func handlerAdded(context: ChannelHandlerContext) {
        activity.lastActivity = context.eventLoop.now
    }

    /// Notes when a request began arriving and how long the client paused before it, and whether the
    /// bytes read end exactly with a request (a request boundary, where the connection can be handed
    /// over); discards what arrives during a lingering close.
    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if lingering { return }  // the answer has been given; what follows is discarded
        if activity.isTLS { return context.fireChannelRead(data) }  // records: the TLSActivityHandler reads the plaintext
        activity.requestBytesArrived(at: context.eventLoop.now)
        // Without a descriptor there is nothing to hand over (and, in tests, maybe no bytes).
        guard activity.fd != nil else { return context.fireChannelRead(data) }
        let bytes = unwrapInboundIn(data)
        let endedBefore = activity.requestsEnded
        activity.lastBodyChunk = nil
        context.fireChannelRead(data)
        // The HTTP decoder above has just decoded these bytes.
        // A request ended in these bytes, no head came after it (a next request's head would end
        // with CR LF CR LF too), and the bytes end with that request.
        activity.atRequestBoundary = activity.requestsEnded > endedBefore && !activity.requestArriving
            && Self.endsWithRequest(bytes, lastBodyChunk: activity.lastBodyChunk)
        activity.lastBodyChunk = nil
    }

    /// Whether `bytes`, read just now and in which a request ended, end with that request. A
    /// request without a body ends with the blank line after its head, and bytes of a next
    /// request cannot end so without completing that request's head (which the decoder would
    /// have passed on). A body's last chunk must be the very memory that ends `bytes`. Anything
    /// else (a chunked body, a copy made by the decoder) counts as "maybe not", which only means
    /// the connection waits for its next request before it is handed over.
    static func endsWithRequest(_ bytes: ByteBuffer, lastBodyChunk: ByteBuffer?) -> Bool {
        let count = bytes.readableBytes
        if count >= 4, bytes.getBytes(at: bytes.readerIndex + count - 4, length: 4) == [13, 10, 13, 10] { return true }
        guard let chunk = lastBodyChunk, chunk.readableBytes > 0, chunk.readableBytes <= count else { return false }
        let chunkEnd = chunk.withUnsafeReadableBytes { buffer in buffer.baseAddress.map { $0 + buffer.count } }
        let bytesEnd = bytes.withUnsafeReadableBytes { buffer in buffer.baseAddress.map { $0 + buffer.count } }
        return chunkEnd != nil && chunkEnd == bytesEnd
    }

    /// Keeps reading until end-of-file during a lingering close, when nothing above asks for reads.
    public func channelReadComplete(context: ChannelHandlerContext) {
        // While lingering nobody above asks for reads any more: keep reading until end-of-file.
        if lingering { context.read() } else { context.fireChannelReadComplete() }
    }

    /// Ends a lingering close at the client's end-of-file, and gives a connection upgraded to
    /// WebSocket its WebSocket drain when a drain (or a hurry) reaches it.
    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if lingering, case ChannelEvent.inputClosed = event {
            self.close(context: context, mode: .all, promise: nil)
            return
        }
        // A connection upgraded to WebSocket has no HTTP drain any more: it gets the WebSocket
        // one, on its way to which the event goes now.
        if event is DrainConnectionEvent || event is HurryDrainEvent, let settings = activity.webSocketDrain {
            DrainHandlers.addWebSocketDrain(to: context.pipeline, settings: settings, activity: activity)
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Carries out a hand-over (sends the socket to the next generation's inbox, then drops this
    /// process's descriptor) and ``GracefulCloseEvent`` (through TLS: close_notify; with input that may
    /// still arrive: output shut down first, then a lingering close; otherwise at once).
    public func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        if let handOver = event as? HandOverEvent {
            // An inactive channel's descriptor is closed, and its number may be another's now.
            guard !lingering, !activity.isTLS, context.channel.isActive, let fd = activity.fd, let listener = activity.listener else {
                promise?.fail(HandOverFailure(outcome: .closed))
                return
            }
            let outcome = handOver.handoff.handOver(fd, listener: listener)
            guard case .sent = outcome else {
                promise?.fail(HandOverFailure(outcome: outcome))
                return
            }
            promise?.succeed()
            // The next generation holds the socket now: this close only drops our descriptor. It
            // goes towards the head, not through our own `close`, and NIO closes the descriptor
            // within it: the channel is inactive from here on (see `close`).
            context.close(promise: nil)
            return
        }
        guard event is GracefulCloseEvent else {
            context.triggerUserOutboundEvent(event, promise: promise)
            return
        }
        promise?.succeed()
        guard !lingering else { return }
        if activity.isTLS {
            // Through TLS, from the pipeline's end: NIOSSL sends close_notify after what is
            // written, reads on until the client's close_notify (or its shutdown timeout), then
            // closes. Unread input cannot reset the answer: TLS reads it all first.
            guard !closingThroughTLS else { return }
            closingThroughTLS = true
            context.channel.close(mode: .all, promise: nil)
            // Many clients never send their close_notify (Go's net/http, wrk): NIOSSL would keep
            // the connection, and the draining process, for its 5 s shutdown timeout. Ours is
            // long out once `lingerTimeout` has passed: the socket closes then.
            lingerTimer = context.eventLoop.assumeIsolated().scheduleTask(in: lingerTimeout) {
                self.close(context: context, mode: .all, promise: nil)
            }
            return
        }
        guard activity.requestArriving || !activity.atRequestBoundary || activity.pendingInput > 0 else {
            self.close(context: context, mode: .all, promise: nil)
            return
        }
        lingering = true
        // `.output` waits for pending writes, then shutdown(SHUT_WR); if the input is closed
        // already NIO closes fully. Either way, nothing is cut off.
        let outputClosed = context.eventLoop.makePromise(of: Void.self)
        outputClosed.futureResult.assumeIsolated().whenFailure { _ in self.close(context: context, mode: .all, promise: nil) }
        context.close(mode: .output, promise: outputClosed)
        lingerTimer = context.eventLoop.assumeIsolated().scheduleTask(in: lingerTimeout) {
            self.close(context: context, mode: .all, promise: nil)
        }
        context.read()
    }

    /// Closes the connection. One handed over by the previous generation is shut down first:
    /// that generation keeps a copy of it for a while (its loan, see `ConnectionHandoff.lendFor`),
    /// and `close(2)` of one copy leaves the socket open, and the client without its end-of-file,
    /// until the last copy goes. `shutdown(2)` acts on the socket itself.
    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        // Only while the channel is active: NIO has not closed the descriptor yet, so the number
        // is still this connection's, and it has not been sent on to the next generation (that
        // close leaves the channel inactive at once), which must not see its socket shut down.
        if mode == .all, handedOver, context.channel.isActive, let fd = activity.fd {
            _ = Glibc.shutdown(fd, Int32(SHUT_RDWR))
        }
        context.close(mode: mode, promise: promise)
    }

    /// Takes the connection out of the ``ConnectionCensus`` and stops the linger timer.
    public func channelInactive(context: ChannelHandlerContext) {
        activity.count(as: nil)
        lingerTimer?.cancel()
        lingerTimer = nil
        context.fireChannelInactive()
    }
}
