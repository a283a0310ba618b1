import NIOCore

/// Writes a few HTTP/2 frames of Baton's own *below* `NIOHTTP2Handler` (right before it in the
/// pipeline, so above TLS when there is TLS), where NIO's connection state machine does not see
/// them.
///
/// Why: in swift-nio-http2 (1.46) a server that sends any GOAWAY, even one naming the largest
/// stream id, while it has no stream open, is "fully quiesced" at once. From then on it refuses
/// every stream the client opened before it read that GOAWAY (RST_STREAM REFUSED_STREAM), and a
/// connection-level WINDOW_UPDATE is a PROTOCOL_ERROR that ends the connection with a GOAWAY
/// naming the largest stream id, so the client cannot even retry the streams it loses. Under
/// closed-loop load that is most draining connections: the server has answered everything
/// while the client's next requests are still unread in the socket buffer.
///
/// So the first step of the two-step GOAWAY is written here: GOAWAY(2^31-1) and a PING that NIO
/// never knew of. NIO goes on serving every stream; once the client's PING ack shows that it has
/// read the GOAWAY (and so opens no stream any more), the framework's own GOAWAYs follow
/// (``HTTP2DrainHandler``).
final class HTTP2FrameWriter: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = Any
    typealias OutboundOut = ByteBuffer

    /// The PING's data: an ack carrying it answers Baton's announcement.
    static let pingData: UInt64 = 0x4241_544F_4E44_524E  // "BATONDRN"

    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    /// GOAWAY(2^31-1, NO_ERROR) and PING(``pingData``), flushed; false if it could not write.
    func announceGoAway() -> Bool {
        guard let context, context.channel.isActive else { return false }
        var frames = context.channel.allocator.buffer(capacity: 34)
        // A frame: length (24 bits), type, flags, stream id (31 bits; 0: the connection).
        frames.writeInteger(UInt8(0)); frames.writeInteger(UInt16(8))
        frames.writeInteger(UInt8(0x7)); frames.writeInteger(UInt8(0)); frames.writeInteger(UInt32(0))
        frames.writeInteger(UInt32(Int32.max)); frames.writeInteger(UInt32(0))  // last stream id, NO_ERROR
        frames.writeInteger(UInt8(0)); frames.writeInteger(UInt16(8))
        frames.writeInteger(UInt8(0x6)); frames.writeInteger(UInt8(0)); frames.writeInteger(UInt32(0))
        frames.writeInteger(Self.pingData)
        context.writeAndFlush(wrapOutboundOut(frames), promise: nil)
        return true
    }
}
