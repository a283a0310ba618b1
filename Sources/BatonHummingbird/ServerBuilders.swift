import Baton
import BatonNIO
import HummingbirdCore
import Logging
import NIOCore
import NIOPosix

/// Why a server builder cannot be served by Baton.
public struct UnsupportedServerBuilder: Error, CustomStringConvertible {
    /// What went wrong and what to do instead: pass the child channel to `BatonServer(childChannel:)`.
    public var description: String {
        "this HTTPServerBuilder does not carry the child channel Baton can serve (Hummingbird changed how builders are made): "
            + "pass the child channel to BatonServer(childChannel:) instead"
    }
}

extension HTTPServerBuilder {
    /// The child channel this builder makes for `responder`: what `Application` would serve
    /// on a socket it bound itself, for Baton to serve on inherited listeners.
    ///
    /// Hummingbird keeps the closure that makes it `package` (hummingbird#452: builders are to
    /// build servers, not channels), and a server cannot be given sockets. So the builder builds
    /// its server (which binds nothing until it runs, and never runs), and the child channel is
    /// read out of the server's initial state by reflection. If a Hummingbird release changes
    /// that state, this throws ``UnsupportedServerBuilder`` rather than serving something else.
    ///
    /// Not the closure itself: cast back out of `Any` (Swift 6.3), the closure passed the
    /// responder on wrongly, and HTTP/2 workers crashed at their first response.
    func childChannel(responder: @escaping HTTPChannelHandler.Responder) throws -> any ServerChildChannel {
        let server = try buildServer(configuration: .init(), eventLoopGroup: MultiThreadedEventLoopGroup.singleton,
                                     logger: Logger(label: "baton.builder"), responder: responder)
        guard case let child as any ServerChildChannel = Mirror(reflecting: server).descendant("state", "initial", "childChannelSetup") else {
            throw UnsupportedServerBuilder()
        }
        return child
    }
}

/// Several child channels in one server: each listener served by the one named for it (by its
/// `LISTEN_FDNAMES` name), the others by a default one. Each connection's value carries how to
/// serve it.
struct ListenerChildChannels: ServerChildChannel {
    struct Value: ServerChildChannelValue {
        let channel: any Channel
        let handle: @Sendable (Logger) async -> Void
    }

    /// By listener position.
    let byListener: [Int: any ServerChildChannel]
    let fallback: any ServerChildChannel

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let listener = (try? channel.pipeline.syncOperations.handler(type: ConnectionSocketHandler.self))?.activity.listener
        let child: any ServerChildChannel = listener.flatMap { byListener[$0] } ?? fallback
        return Self.setup(child, channel: channel, logger: logger)
    }

    private static func setup<C: ServerChildChannel>(_ child: C, channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        child.setup(channel: channel, logger: logger).map { value in
            Value(channel: channel) { logger in await child.handle(value: value, logger: logger) }
        }
    }

    func handle(value: Value, logger: Logger) async {
        await value.handle(logger)
    }
}
