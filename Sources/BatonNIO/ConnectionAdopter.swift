import Logging
import NIOCore
import NIOPosix

/// Makes a NIO channel of a connected socket this worker got hold of, accepted by an
/// ``Acceptor`` or handed over by the previous generation, and registers it.
///
/// Each connection's pipeline starts with a ``ConnectionSocketHandler`` for its descriptor (the
/// drain rules need to see the socket); `initializer` adds the rest. Remote half-closure is
/// allowed.
///
/// `@unchecked Sendable`: setting a bootstrap's initializer mutates it, so each adopter has its
/// own and is used from one serial queue (its acceptor's or the inbox reader's).
final class ConnectionAdopter: @unchecked Sendable {
    private let bootstrap: ClientBootstrap
    private let registry: ConnectionRegistry
    private let logger: Logger
    private let initializer: @Sendable (any Channel) -> EventLoopFuture<Void>

    init(group: any EventLoopGroup, registry: ConnectionRegistry, logger: Logger,
         initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>) {
        self.bootstrap = ClientBootstrap(group: group).channelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
        self.registry = registry
        self.logger = logger
        self.initializer = initializer
    }

    /// Takes `fd` (owned from now on: NIO closes it with the channel), a connection to the
    /// listener at position `listener` (nil: unknown).
    func adopt(_ fd: Int32, listener: Int?) {
        registry.willAccept()
        let initializer = self.initializer
        let registry = self.registry
        let logger = self.logger
        bootstrap.channelInitializer { channel in
            do {
                try channel.pipeline.syncOperations.addHandler(ConnectionSocketHandler(fd: fd, listener: listener), name: ConnectionSocketHandler.name)
            } catch {
                return channel.eventLoop.makeFailedFuture(error)
            }
            return initializer(channel)
        }.withConnectedSocket(fd).whenComplete { result in
            switch result {
            case .success(let channel): registry.accepted(channel)
            case .failure(let error):
                logger.debug("connection setup failed: \(error)")
                registry.acceptFailed()
            }
        }
    }
}
