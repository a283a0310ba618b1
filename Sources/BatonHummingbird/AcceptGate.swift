import NIOCore

/// Sent to a server channel (as an outbound user event) to stop accepting for good.
struct StopAcceptingEvent: Sendable {}

/// The first handler of a server channel: it counts every accepted connection into the
/// ``ConnectionRegistry`` before NIO sets it up, and, once told to stop, swallows `read` so the
/// channel accepts nothing more. Connections left in the kernel's accept queue are then taken by
/// the next generation, which shares the listening socket.
final class AcceptGate: ChannelDuplexHandler {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel
    typealias OutboundIn = Never
    typealias OutboundOut = Never

    private let registry: ConnectionRegistry
    private var stopped = false

    init(registry: ConnectionRegistry) {
        self.registry = registry
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        registry.accepted(unwrapInboundIn(data))
        context.fireChannelRead(data)
    }

    func read(context: ChannelHandlerContext) {
        if !stopped { context.read() }
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        guard event is StopAcceptingEvent else {
            context.triggerUserOutboundEvent(event, promise: promise)
            return
        }
        stopped = true
        context.channel.setOption(ChannelOptions.autoRead, value: false).cascade(to: promise)
    }
}
