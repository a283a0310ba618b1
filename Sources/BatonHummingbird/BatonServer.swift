import Baton
import BatonNIO
import HummingbirdCore
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// Settings of a ``BatonServer``.
public struct BatonServerConfiguration: Sendable {
    /// Hard deadline of a drain: connections still open then are closed. Keep it below the
    /// master's drain timeout, so the worker ends on its own terms rather than by SIGKILL.
    public var drainDeadline: Duration = .seconds(25)
    /// How long a keep-alive connection must have been quiet (since its last request or response)
    /// before a drain closes it without waiting for another request; see ``ConnectionDrainHandler``.
    public var idleGrace: TimeAmount = .seconds(1)

    /// The defaults.
    public init() {}
}

/// Serves a Hummingbird child channel (HTTP/1.1 by default) on the listeners a Baton master
/// passed to this worker, reports readiness, and drains on graceful shutdown (SIGTERM).
///
/// Connections are accepted by an ``Acceptor`` per listener and served by NIO. The drain: stop
/// accepting (new connections stay in the shared kernel queue for the next generation); send
/// `STOPPING=1`; tell every connection to finish (see ``ConnectionDrainHandler``);
/// wait until the last one has closed, or until ``BatonServerConfiguration/drainDeadline``.
public final class BatonServer<ChildChannel: ServerChildChannel>: Service, Sendable {
    let childChannel: ChildChannel
    let worker: BatonWorker
    let configuration: BatonServerConfiguration
    let eventLoopGroup: any EventLoopGroup
    let logger: Logger

    /// Serves `childChannel` on the listeners of `worker`.
    public init(childChannel: ChildChannel, worker: BatonWorker, configuration: BatonServerConfiguration = .init(),
                eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger) {
        self.childChannel = childChannel
        self.worker = worker
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
    }

    /// Binds the inherited listeners, reports `READY=1`, serves until graceful shutdown, drains.
    public func run() async throws {
        let registry = ConnectionRegistry()
        let (accepted, acceptor) = AsyncStream.makeStream(of: ChildChannel.Value.self)
        let childChannel = self.childChannel
        let logger = self.logger
        let bootstrap = ClientBootstrap(group: eventLoopGroup)
            .channelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
        let acceptors = try worker.listeners.map {
            try Acceptor(listener: $0, bootstrap: bootstrap, registry: registry, logger: logger) { channel in
                childChannel.setup(channel: channel, logger: logger).map { acceptor.yield($0) }
            }
        }
        try worker.ready(status: "generation \(worker.generation) serving")
        logger.info("worker generation \(worker.generation) (version \(worker.version)) serving on \(worker.listeners.map(\.name).joined(separator: ", "))")

        await withDiscardingTaskGroup { group in
            group.addTask {
                try? await gracefulShutdown()
                await self.drain(acceptors: acceptors, registry: registry)
                acceptor.finish()
            }
            for await value in accepted {
                group.addTask { await childChannel.handle(value: value, logger: logger) }
            }
        }
    }

    private func drain(acceptors: [Acceptor], registry: ConnectionRegistry) async {
        let started = ContinuousClock.now
        // Without orders (an older master) every queue is taken: the safe choice when this may be
        // the last generation on a socket.
        let shared = worker.drainOrders()?.sharedListeners ?? []
        for (index, acceptor) in acceptors.enumerated() { await acceptor.stop(takeQueued: !shared.contains(index)) }
        try? worker.stopping()
        let listeners = worker.listeners
        let sharedNames = listeners.indices.filter { shared.contains($0) }.map { listeners[$0].name }
        let ownNames = listeners.indices.filter { !shared.contains($0) }.map { listeners[$0].name }
        let left = sharedNames.isEmpty ? "" : "; queue of \(sharedNames.joined(separator: ", ")) left to the generation that shares it"
        let taken = ownNames.isEmpty ? "" : "; queue of \(ownNames.joined(separator: ", ")) taken (last user)"
        logger.info("worker generation \(worker.generation) draining \(registry.openCount) connection(s)\(left)\(taken)")
        registry.startDraining()
        let deadline = configuration.drainDeadline
        let logger = self.logger
        await withTaskGroup(of: Bool.self) { group in
            group.addTask { await registry.waitUntilAllClosed(); return true }
            group.addTask { (try? await Task.sleep(for: deadline)) != nil }
            if await group.next() != true {
                if !Task.isCancelled {
                    logger.warning("drain deadline (\(deadline)) passed with \(registry.openCount) connection(s) open: closing them")
                }
                registry.closeAll()
            }
            group.cancelAll()
        }
        let took = ContinuousClock.now - started
        logger.info("worker generation \(worker.generation) drained in \(took.components.seconds * 1000 + took.components.attoseconds / 1_000_000_000_000_000) ms")
    }
}

extension BatonServer: CustomStringConvertible {
    public var description: String { "BatonServer" }
}
