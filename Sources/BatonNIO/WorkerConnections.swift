import Baton
import Logging
import NIOCore
import NIOPosix

/// Drain settings shared by every adapter (Hummingbird's `BatonServerConfiguration`, BatonVapor's).
public struct DrainConfiguration: Sendable {
    /// Hard deadline of a drain: connections still open then are closed. Nil (the default)
    /// takes the deadline the master sends with its ``DrainOrders`` (its drain timeout less a
    /// margin to exit before SIGKILL), or 25 s from a master that sends none. A value set here
    /// is used when it is earlier than the master's.
    public var drainDeadline: Duration?
    /// How long a keep-alive connection must have been quiet (since its last request or response)
    /// before a drain closes it without waiting for another request; see ``ConnectionDrainHandler``.
    public var idleGrace: TimeAmount = .seconds(1)
    /// How long a drain hands idle keep-alive connections to the next generation (when it takes
    /// them); a connection not handed over by then is closed gracefully.
    public var handoffWindow: Duration = .seconds(10)
    /// Over how long the hand-over is spread, per connection open when the drain starts (they
    /// go evenly over it, in random order): setting a connection up costs the next generation
    /// about what an accept does, and thousands at once would stall it on a busy core. The
    /// spread is at least 100 ms and at most half the window.
    public var handoffSpreadPerConnection: Duration = .milliseconds(1)

    /// The defaults.
    public init() {}
}

/// The framework-neutral half of serving on a Baton worker: an ``Acceptor`` on every listener
/// the master passed, a reader of the connection inbox where the previous generation hands its
/// keep-alive connections over, a ``ConnectionRegistry`` of all of them, and the drain.
///
/// An adapter builds each connection's HTTP pipeline in `initializer` (with a
/// ``ConnectionDrainHandler`` in it), reports readiness with ``ready(status:)`` once this exists,
/// and calls ``drain(_:)`` on graceful shutdown.
public final class WorkerConnections: Sendable {
    /// Every connection accepted and not closed yet.
    public let registry = ConnectionRegistry()
    private let acceptors: [Acceptor]
    private let inbox: ConnectionInboxReader?
    private let worker: BatonWorker
    private let logger: Logger

    /// Starts accepting on every listener of `worker`; each connection becomes a channel on
    /// `eventLoopGroup` (remote half-closure allowed) set up by `initializer`.
    public init(worker: BatonWorker, eventLoopGroup: any EventLoopGroup, logger: Logger,
                initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>) throws {
        self.worker = worker
        self.logger = logger
        let registry = self.registry
        func adopter() -> ConnectionAdopter {
            ConnectionAdopter(group: eventLoopGroup, registry: registry, logger: logger, initializer: initializer)
        }
        self.acceptors = try worker.listeners.enumerated().map {
            try Acceptor(listener: $0.element, index: $0.offset, adopter: adopter(), logger: logger)
        }
        let names = worker.listeners.map(\.name)
        self.inbox = worker.connectionInboxFD.map { ConnectionInboxReader(fd: $0, listenerNames: names, adopter: adopter(), logger: logger) }
    }

    /// Tells the master this worker serves (`READY=1`), and that it takes connections handed
    /// over by the previous generation when it has a connection inbox.
    public func ready(status: String? = nil) throws {
        try worker.ready(status: status, takesConnections: inbox != nil)
    }

    /// Drains: stops accepting (leaving the kernel queue of a listener shared with a newer
    /// generation to it, taking it otherwise), sends `STOPPING=1`, tells every connection to
    /// finish, and returns once the last one has closed or `deadline` has passed (then closing
    /// what is left).
    ///
    /// When the master's orders carry the next generation's connection inbox, keep-alive
    /// connections are handed over there at a request boundary, spread over a time, for up to
    /// the configuration's `handoffWindow`, instead of being closed; see ``ConnectionDrainHandler``.
    public func drain(_ configuration: DrainConfiguration) async {
        let started = ContinuousClock.now
        // Without orders (an older master) every queue is taken: the safe choice when this may be
        // the last generation on a socket.
        let orders = worker.drainOrders()
        let deadline = [configuration.drainDeadline, orders?.deadline].compactMap { $0 }.min() ?? .seconds(25)
        let shared = orders?.sharedListeners ?? []
        let spread = max(100_000_000, configuration.handoffSpreadPerConnection.nanoseconds * Int64(registry.openCount))
        // Only connections to a socket the next generation serves too: after a port change the
        // old port's clients must go (gracefully), not live on in the new generation.
        let handoff = orders?.connectionInbox.map {
            ConnectionHandoff(inbox: $0, listenerNames: worker.listeners.map(\.name), handingOver: shared,
                              window: .milliseconds(configuration.handoffWindow.milliseconds), spread: .nanoseconds(spread), logger: self.logger)
        }
        // While this drain lasts, newer orders may name a newer generation's inbox.
        let retargeting = handoff.flatMap { HandoffRetargeting(worker: worker, handoff: $0, logger: self.logger) }
        for (index, acceptor) in acceptors.enumerated() { await acceptor.stop(takeQueued: !shared.contains(index)) }
        try? worker.stopping()
        let listeners = worker.listeners
        let sharedNames = listeners.indices.filter { shared.contains($0) }.map { listeners[$0].name }
        let ownNames = listeners.indices.filter { !shared.contains($0) }.map { listeners[$0].name }
        let left = sharedNames.isEmpty ? "" : "; queue of \(sharedNames.joined(separator: ", ")) left to the generation that shares it"
        let taken = ownNames.isEmpty ? "" : "; queue of \(ownNames.joined(separator: ", ")) taken (last user)"
        let handing = handoff == nil ? "" : "; handing keep-alive connections to the next generation"
        logger.info("worker generation \(worker.generation) draining \(registry.openCount) connection(s)\(left)\(taken)\(handing)")
        let registry = self.registry
        registry.startDraining(handoff: handoff)
        let logger = self.logger
        let inbox = self.inbox
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                // The generation before may still be handing connections over to this one: the
                // ones it sends go on to the next generation (or close gracefully) like the rest,
                // instead of dying unread in the inbox when this process exits.
                await inbox?.waitUntilSendersAreGone()
                await registry.waitUntilAllClosed()
                return true
            }
            group.addTask { (try? await Task.sleep(for: deadline)) != nil }
            if await group.next() != true {
                if !Task.isCancelled {
                    logger.warning("drain deadline (\(deadline)) passed with \(registry.openCount) connection(s) open: closing them")
                }
                registry.closeAll()
            }
            group.cancelAll()
        }
        retargeting?.stop()
        inbox?.stop()
        handoff?.close()
        let took = (ContinuousClock.now - started).milliseconds
        let received = inbox.map { $0.count > 0 ? "; had taken over \($0.count) connection(s) from the generation before" : "" } ?? ""
        if let (handedOver, closed) = handoff?.counts {
            logger.info("worker generation \(worker.generation) drained in \(took) ms: \(handedOver) connection(s) handed over, \(closed) closed\(received)")
        } else {
            logger.info("worker generation \(worker.generation) drained in \(took) ms\(received)")
        }
    }
}
