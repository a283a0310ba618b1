import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Makes a NIO channel of a connected socket this worker got hold of, accepted by an
/// ``Acceptor`` or handed over by the previous generation, and registers it.
///
/// Each connection's pipeline starts with a ``ConnectionSocketHandler`` for its descriptor (the
/// drain rules need to see the socket); `initializer` adds the rest. Remote half-closure is
/// allowed. Connections go to the group's event loops in turn; a batch costs one task per event
/// loop, and each channel is made on its own event loop (no further hop).
///
/// `@unchecked Sendable`: ``adopt(_:)`` is called from one thread at a time (its acceptor's
/// thread, or the inbox reader's queue); each event loop's bootstrap is used on that loop only
/// (setting a bootstrap's initializer mutates it).
final class ConnectionAdopter: @unchecked Sendable {
    /// `@unchecked Sendable`: the bootstrap is only used on `eventLoop`.
    private struct Loop: @unchecked Sendable {
        let eventLoop: any EventLoop
        let bootstrap: ClientBootstrap
    }

    private let loops: [Loop]
    private var nextLoop = 0
    private let registry: ConnectionRegistry
    private let logger: Logger
    private let initializer: @Sendable (any Channel) -> EventLoopFuture<Void>
    /// During a canary upgrade: the canary's share of what is accepted (shared by a worker's adopters).
    private let share: NIOLockedValueBox<TrafficShare?>

    init(group: any EventLoopGroup, registry: ConnectionRegistry, logger: Logger,
         share: NIOLockedValueBox<TrafficShare?> = NIOLockedValueBox(nil),
         initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>) {
        self.share = share
        self.loops = group.makeIterator().map { eventLoop in
            Loop(eventLoop: eventLoop,
                 bootstrap: ClientBootstrap(group: eventLoop).channelOption(ChannelOptions.allowRemoteHalfClosure, value: true))
        }
        self.registry = registry
        self.logger = logger
        self.initializer = initializer
    }

    /// Takes `fd` (owned from now on: NIO closes it with the channel), a connection to the
    /// listener at position `listener` (nil: unknown).
    func adopt(_ fd: Int32, listener: Int?) {
        adopt([fd], listener: listener)
    }

    /// Takes the connections an ``Acceptor`` accepted on the listener at position `listener`,
    /// less the share a canary gets, if one runs.
    func adoptAccepted(_ fds: [Int32], listener: Int) {
        guard let share = share.withLockedValue({ $0 }) else { return adopt(fds, listener: listener) }
        let kept = share.split(fds, listener: listener)
        if !kept.isEmpty { adopt(kept, listener: listener) }
    }

    /// Takes every descriptor in `fds` (owned from now on), connections to the listener at
    /// position `listener` (nil: unknown); `handedOver`: the previous generation sent them, and
    /// may still hold copies.
    func adopt(_ fds: [Int32], listener: Int?, handedOver: Bool = false) {
        var batches = [[Int32]](repeating: [], count: loops.count)
        for fd in fds {
            registry.willAccept()
            batches[nextLoop].append(fd)
            nextLoop = (nextLoop + 1) % loops.count
        }
        for (index, batch) in batches.enumerated() where !batch.isEmpty {
            let loop = loops[index]
            loop.eventLoop.execute {
                for fd in batch { self.setUp(fd, listener: listener, handedOver: handedOver, bootstrap: loop.bootstrap) }
            }
        }
    }

    /// On the bootstrap's event loop: NIO sets the channel up right here.
    private func setUp(_ fd: Int32, listener: Int?, handedOver: Bool, bootstrap: ClientBootstrap) {
        let initializer = self.initializer
        let registry = self.registry
        let logger = self.logger
        bootstrap.channelInitializer { channel in
            do {
                try channel.pipeline.syncOperations.addHandler(ConnectionSocketHandler(fd: fd, listener: listener, handedOver: handedOver), name: ConnectionSocketHandler.name)
            } catch {
                return channel.eventLoop.makeFailedFuture(error)
            }
            return initializer(channel)
        }.withConnectedSocket(fd).whenComplete { result in
            switch result {
            case .success(let channel): registry.accepted(channel, listener: listener)
            case .failure(let error):
                logger.debug("connection setup failed: \(error)")
                registry.acceptFailed()
            }
        }
    }
}
