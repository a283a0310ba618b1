import Baton
import Logging
import NIOCore
import NIOPosix

/// Drain settings shared by every adapter (Hummingbird's `BatonServerConfiguration`, BatonVapor's).
public struct DrainConfiguration: Sendable {
    /// Hard deadline of a drain: connections still open then are closed. Keep it below the
    /// master's drain timeout, so the worker ends on its own terms rather than by SIGKILL.
    public var drainDeadline: Duration = .seconds(25)
    /// How long a keep-alive connection must have been quiet (since its last request or response)
    /// before a drain closes it without waiting for another request; see ``ConnectionDrainHandler``.
    public var idleGrace: TimeAmount = .seconds(1)

    /// The defaults.
    public init() {}
}

/// The framework-neutral half of serving on a Baton worker: an ``Acceptor`` on every listener
/// the master passed, a ``ConnectionRegistry`` of what they accepted, and the drain.
///
/// An adapter builds each connection's HTTP pipeline in `initializer` (with a
/// ``ConnectionDrainHandler`` in it), reports readiness once this exists, and calls
/// ``drain(deadline:)`` on graceful shutdown.
public final class WorkerConnections: Sendable {
    /// Every connection accepted and not closed yet.
    public let registry = ConnectionRegistry()
    private let acceptors: [Acceptor]
    private let worker: BatonWorker
    private let logger: Logger

    /// Starts accepting on every listener of `worker`; each connection becomes a channel on
    /// `eventLoopGroup` (remote half-closure allowed) set up by `initializer`.
    public init(worker: BatonWorker, eventLoopGroup: any EventLoopGroup, logger: Logger,
                initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>) throws {
        self.worker = worker
        self.logger = logger
        let registry = self.registry
        let bootstrap = ClientBootstrap(group: eventLoopGroup)
            .channelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
        self.acceptors = try worker.listeners.map {
            try Acceptor(listener: $0, bootstrap: bootstrap, registry: registry, logger: logger, initializer: initializer)
        }
    }

    /// Drains: stops accepting (leaving the kernel queue of a listener shared with a newer
    /// generation to it, taking it otherwise), sends `STOPPING=1`, tells every connection to
    /// finish, and returns once the last one has closed or `deadline` has passed (then closing
    /// what is left).
    public func drain(deadline: Duration) async {
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
        let registry = self.registry
        registry.startDraining()
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
