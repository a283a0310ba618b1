import Baton
@preconcurrency import Dispatch
#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Drain settings shared by every adapter (Hummingbird's `BatonServerConfiguration`, BatonVapor's).
public struct DrainConfiguration: Sendable {
    /// Hard deadline of a drain: connections still open then are closed. Nil (the default)
    /// takes the deadline the master sends with its `DrainOrders` (its drain timeout less a
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
    /// WebSockets (which cannot be handed over) are closed with 1001 (going away), each at a
    /// random moment of this window from the start of the drain, so that their clients do not
    /// all reconnect to the next generation at once. See ``WebSocketDrainHandler``.
    public var webSocketCloseWindow: Duration = .seconds(5)
    /// How long the app's drain handlers (``BatonDrain``) may run before a WebSocket's close.
    public var webSocketHookTimeout: Duration = .seconds(1)
    /// How long a WebSocket's close may wait for a moment when no client message is unanswered.
    public var webSocketQuietWait: Duration = .seconds(1)
    /// How long a WebSocket client has to answer the close before its connection is closed.
    public var webSocketCloseTimeout: Duration = .seconds(5)

    /// The WebSocket settings as the ``WebSocketDrainHandler`` takes them.
    var webSocketDrain: WebSocketDrainSettings {
        WebSocketDrainSettings(window: .init(webSocketCloseWindow), hookTimeout: .init(webSocketHookTimeout),
                               quietWait: .init(webSocketQuietWait), closeTimeout: .init(webSocketCloseTimeout))
    }

    /// Where each listener's pipelines have their TLS handler (shared by the copies of this
    /// configuration, so by one server's connections).
    let tlsHandlers = TLSHandlerMemo()

    /// The defaults.
    public init() {}
}

/// The framework-neutral half of serving on a Baton worker: an `Acceptor` on every listener
/// the master passed, a reader of the connection inbox where the previous generation hands its
/// keep-alive connections over, a ``ConnectionRegistry`` of all of them, and the drain.
///
/// An adapter builds each connection's HTTP pipeline in `initializer` (with a
/// ``ConnectionDrainHandler`` in it), reports readiness with ``ready(status:)`` once this exists,
/// and calls ``drain(_:)`` on graceful shutdown.
///
/// In a canary upgrade it follows the master's orders (see `Baton.WorkerOrder`): as the serving
/// generation it passes the canary its share of the traffic; as the canary (started with
/// `BATON_CANARY=1`) it accepts nothing until it is promoted, serving only what arrives in its
/// inbox. Every second it reports its request counts to the master, which judges the canary.
///
/// ```swift
/// let connections = try WorkerConnections(worker: worker, eventLoopGroup: group, logger: logger) { channel in
///     channel.eventLoop.makeCompletedFuture {
///         try channel.pipeline.syncOperations.addHandlers([/* HTTP codec, */ ConnectionDrainHandler(), /* app */])
///         try DrainHandlers.add(to: channel, configuration: drain)
///     }
/// }
/// try connections.ready(status: "serving")
/// // on SIGTERM:
/// await connections.drain(drain)
/// ```
public final class WorkerConnections: Sendable {
    private struct Accepting {
        /// By listener position.
        var acceptors: [Int: Acceptor] = [:]
        var started = false
        /// A drain is under way: no accepting until it is called off.
        var stopped = false
        /// Listeners (by position) this process has closed its copy of.
        var closed: Set<Int> = []
    }

    /// How one drain ended.
    private enum DrainEnd: Sendable {
        /// Every connection closed (or was handed over).
        case drained
        case deadline
        /// The task running the drain was cancelled.
        case cancelled
        /// The master called it off (``WorkerOrder/resume``).
        case resumed
    }

    /// What a drain called off waits for before it drains again.
    private enum NextDrain: Sendable {
        /// ``DrainOrders`` came.
        case orders
        /// The master exited: drain without orders.
        case masterGone
        case cancelled
    }

    /// Every connection accepted and not closed yet.
    public let registry = ConnectionRegistry()
    private let accepting = NIOLockedValueBox(Accepting())
    private let makeAcceptor: @Sendable (Int) throws -> Acceptor
    private let inbox: ConnectionInboxReader?
    /// Serves the connections taken back from a next generation that died (locked: an adopter
    /// takes one caller at a time).
    private let takenBack: NIOLockedValueBox<ConnectionAdopter>
    private let worker: BatonWorker
    private let logger: Logger
    /// The canary's share, while this generation passes one.
    private let share = NIOLockedValueBox<TrafficShare?>(nil)
    private let follower = NIOLockedValueBox<ControlFollower?>(nil)
    private let reporter = NIOLockedValueBox<(any DispatchSourceTimer)?>(nil)
    /// The drain under way, which a `resume` order ends.
    private let currentDrain = NIOLockedValueBox<OneShot<DrainEnd>?>(nil)
    /// Once the drain under way has stopped accepting: what calling it off does. It runs once,
    /// under this box's lock: on the control channel's queue as the `resume` order comes, or in
    /// the drain when it learns of the order (if that came before this was set); the drain waits
    /// for a run under way before it goes on.
    private let callOff = NIOLockedValueBox<(@Sendable () -> Void)?>(nil)
    /// While a drain is called off: what ends the wait for the next one.
    private let nextDrain = NIOLockedValueBox<OneShot<NextDrain>?>(nil)

    /// Starts accepting on every listener of `worker`; each connection becomes a channel on
    /// `eventLoopGroup` (remote half-closure allowed) set up by `initializer`.
    public init(worker: BatonWorker, eventLoopGroup: any EventLoopGroup, logger: Logger,
                initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>) throws {
        self.worker = worker
        self.logger = logger
        let registry = self.registry
        let share = self.share
        @Sendable func adopter() -> ConnectionAdopter {
            ConnectionAdopter(group: eventLoopGroup, registry: registry, logger: logger, share: share, initializer: initializer)
        }
        self.makeAcceptor = { index in
            try Acceptor(listener: worker.listeners[index], index: index, adopter: adopter(), logger: logger)
        }
        let names = worker.listeners.map(\.name)
        self.inbox = worker.connectionInboxFD.map { ConnectionInboxReader(fd: $0, listenerNames: names, adopter: adopter(), logger: logger) }
        self.takenBack = NIOLockedValueBox(adopter())
        if worker.isCanary {
            logger.info("worker generation \(worker.generation) is a canary: it serves what the serving generation passes it, and accepts nothing until it is promoted")
        } else {
            try startAccepting()
        }
    }

    /// Starts accepting on every listener, unless it already does or the drain has begun.
    private func startAccepting() throws {
        try accepting.withLockedValue { state in
            guard !state.started, !state.stopped else { return }
            for index in worker.listeners.indices { state.acceptors[index] = try makeAcceptor(index) }
            state.started = true
        }
    }

    /// Tells the master this worker serves (`READY=1`), that it takes connections handed over by
    /// the previous generation when it has a connection inbox, and that it follows canary orders
    /// when it also has a control channel; then follows that channel and reports its request
    /// counts every second.
    public func ready(status: String? = nil) throws {
        let follows = inbox != nil && worker.control != nil
        try worker.ready(status: status, takesConnections: inbox != nil, followsCanaryOrders: follows, resumes: follows)
        guard follows else { return }
        if let timeout = worker.successorTimeout {
            let (logger, generation) = (self.logger, worker.generation)
            MasterWatch.outliveMaster(for: timeout) { timeout in
                logger.warning("worker generation \(generation): the master died; serving on, waiting up to \(timeout.shortDescription) for a new master to adopt this worker")
            }
        }
        follower.withLockedValue { follower in
            follower = ControlFollower(worker: worker, logger: logger,
                                       onOrder: { [self] order in self.follow(order) },
                                       onDrainOrders: { [self] in self.nextDrain.withLockedValue { $0 }?.settle(.orders) })
        }
        startReporting()
    }

    private func follow(_ order: WorkerOrder) {
        switch order {
        case .resume:
            // The order may come before the drain has begun (SIGTERM and orders travel apart):
            // it then ends that drain as soon as it begins.
            let ending = currentDrain.withLockedValue { current in
                if current == nil { current = OneShot() }
                return current!
            }
            // Accepting starts again right here, not after a hop to the drain's task: under
            // load the task pool's queue held that hop ~10 ms, while nobody accepted.
            if ending.settle(.resumed) { runCallOff() }
        case .hurry:
            let open = registry.hurry()
            logger.notice("worker generation \(worker.generation): hurried (too many generations draining): its \(open) connection(s) close sooner")
        case .master(let pid, let pidfd):
            MasterWatch.follow(pid: pid, pidfd: pidfd)
            logger.notice("worker generation \(worker.generation): adopted by master pid \(pid)")
        case .accept:
            do {
                try startAccepting()
                logger.notice("worker generation \(worker.generation): promoted from canary; accepting on \(worker.listeners.map(\.name).joined(separator: ", "))")
            } catch {
                logger.error("worker generation \(worker.generation): promoted from canary, but cannot accept: \(error)")
            }
        case .share(let percent, let inboxFD):
            endShare()
            guard percent > 0, let inboxFD else {
                return logger.notice("worker generation \(worker.generation): the canary's share ended; serving all the traffic")
            }
            let listeners = worker.listeners
            let handoff = ConnectionHandoff(inbox: inboxFD, listenerNames: listeners.map(\.name), handingOver: Set(listeners.indices),
                                            window: .hours(24), logger: logger)
            let draining = accepting.withLockedValue { $0.stopped }
            guard !draining else { return handoff.close() }
            share.withLockedValue { $0 = TrafficShare(percent: percent, handoff: handoff) }
            let spread = TimeAmount.milliseconds(Int64(min(5_000, max(100, registry.openCount))))  // 1 ms per connection, as a drain spreads them
            let (moving, open) = registry.share(percent: percent, handoff: handoff, spread: spread)
            logger.notice("worker generation \(worker.generation): canary upgrade: passing \(percent)% of new connections to the canary, and \(moving) of \(open) open connection(s)")
        }
    }

    /// Ends the canary's share: connections on their way to it stay (or go where a drain says).
    /// If the canary died, what it had not read yet comes back here.
    private func endShare() {
        let ended = share.withLockedValue { current in
            defer { current = nil }
            return current?.handoff
        }
        guard let ended else { return }
        takeBack(from: ended, to: "the canary")
        ended.close()
    }

    /// Serves here again the connections `handoff` lent to a generation that died before it read
    /// from them (see ``ConnectionHandoff/takeBack()``), and says what became of them.
    private func takeBack(from handoff: ConnectionHandoff, to whom: String) {
        let (connections, lost) = handoff.takeBack()
        let count = connections.values.reduce(0) { $0 + $1.count }
        guard count + lost > 0 else { return }
        takenBack.withLockedValue { adopter in
            for (listener, fds) in connections.sorted(by: { $0.key < $1.key }) { adopter.adopt(fds, listener: listener) }
        }
        logger.notice("worker generation \(worker.generation): took back \(count) connection(s) handed to \(whom), which died before it read from them; \(lost) it had read from, or that were closing, went with it")
    }

    /// Sends the master this process's request counts every second while they change.
    private func startReporting() {
        let timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "baton.stats"))
        let last = NIOLockedValueBox<(RequestStats, String)?>(nil)
        let worker = self.worker
        timer.setEventHandler {
            let stats = RequestRecorder.shared.snapshot
            let connections = ConnectionCensus.wire(ConnectionCensus.shared.snapshot)
            guard let sent = last.withLockedValue({ $0 }), sent.0 == stats, sent.1 == connections else {
                if (try? worker.report(stats, connections: connections)) != nil { last.withLockedValue { $0 = (stats, connections) } }
                return
            }
        }
        timer.schedule(deadline: .now() + .seconds(1), repeating: .seconds(1), leeway: .milliseconds(100))
        timer.resume()
        reporter.withLockedValue { $0 = timer }
    }

    /// Drains: stops accepting (leaving the kernel queue of a listener shared with a newer
    /// generation to it, taking it otherwise), sends `STOPPING=1`, tells every connection to
    /// finish, and returns once the last one has closed or `deadline` has passed (then closing
    /// what is left).
    ///
    /// When the master's orders carry the next generation's connection inbox, keep-alive
    /// connections are handed over there at a request boundary, spread over a time, for up to
    /// the configuration's `handoffWindow`, instead of being closed; see ``ConnectionDrainHandler``.
    ///
    /// The master may call the drain off (`resume`: the generation it drained for died): then
    /// every connection still here stays, accepting starts again on the listeners still open,
    /// and this waits, serving, for the master's next `DrainOrders` (or its exit) to drain again.
    public func drain(_ configuration: DrainConfiguration) async {
        let started = ContinuousClock.now
        // Without orders (an older master) every queue is taken: the safe choice when this may be
        // the last generation on a socket.
        var orders = worker.drainOrders()
        while await drainOnce(configuration, orders: orders, started: started) == .resumed {
            let next = OneShot<NextDrain>()
            nextDrain.withLockedValue { $0 = next }
            MasterWatch.onExit { next.settle(.masterGone) }
            // Orders that came with the `resume` already (or since) count.
            if worker.control?.hasDrainOrders == true { next.settle(.orders) }
            let why = await withTaskCancellationHandler { await next.value } onCancel: { next.settle(.cancelled) }
            nextDrain.withLockedValue { $0 = nil }
            orders = worker.drainOrders()
            switch why {
            case .orders: logger.info("worker generation \(worker.generation): drain orders came: draining again")
            case .masterGone: logger.warning("worker generation \(worker.generation): the master exited: draining")
            case .cancelled: break
            }
        }
    }

    /// One drain, until it ends or is called off.
    private func drainOnce(_ configuration: DrainConfiguration, orders: DrainOrders?, started: ContinuousClock.Instant) async -> DrainEnd {
        let ending = currentDrain.withLockedValue { current in
            if current == nil { current = OneShot() }
            return current!
        }
        if ending.settled == .resumed {
            currentDrain.withLockedValue { $0 = nil }
            if let inbox = orders?.connectionInbox { close(inbox) }
            logger.notice("worker generation \(worker.generation): drain called off before it began; serving on")
            return .resumed
        }
        let deadline = [configuration.drainDeadline, orders?.deadline].compactMap { $0 }.min() ?? .seconds(25)
        let shared = orders?.sharedListeners ?? []
        let spread = max(100_000_000, configuration.handoffSpreadPerConnection.nanoseconds * Int64(registry.openCount))
        // Only connections to a socket the next generation serves too: after a port change the
        // old port's clients must go (gracefully), not live on in the new generation.
        let handoff = orders?.connectionInbox.map {
            ConnectionHandoff(inbox: $0, listenerNames: worker.listeners.map(\.name), handingOver: shared,
                              window: .milliseconds(configuration.handoffWindow.milliseconds), spread: .nanoseconds(spread), logger: self.logger)
        }
        // A canary's share ends here: the connections on their way to it go where the drain says.
        endShare()
        // While this drain lasts, newer orders may name a newer generation's inbox.
        let follower = self.follower.withLockedValue { $0 }
        if let handoff { follower?.retargeting(handoff) }
        // A worker that follows the master's orders may be told to resume: it keeps its copy of
        // a shared listener until the drain ends, to accept there again.
        let resumable = follower != nil
        let (acceptors, accepted) = accepting.withLockedValue { state in
            state.stopped = true
            defer { state.acceptors = [:] }
            return (state.acceptors, state.started)
        }
        for (index, acceptor) in acceptors.sorted(by: { $0.key < $1.key }) {
            let keep = resumable && shared.contains(index)
            await acceptor.stop(takeQueued: !shared.contains(index), keepListener: keep)
            if !keep { accepting.withLockedValue { _ = $0.closed.insert(index) } }
        }
        // A canary rolled back never accepted: its queues are the serving generation's.
        if !accepted { closeListeners() }
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
        callOff.withLockedValue { $0 = { [self] in self.resume(handoff: handoff, follower: follower) } }
        let inbox = self.inbox
        // The generation before may still be handing connections over to this one: the ones it
        // sends go on to the next generation (or close gracefully) like the rest, instead of
        // dying unread in the inbox when this process exits. (Unstructured: neither wait can be
        // cancelled, and a drain called off leaves them waiting.)
        Task {
            await inbox?.waitUntilSendersAreGone()
            await registry.waitUntilAllClosed()
            ending.settle(.drained)
        }
        let timer = Task {
            guard (try? await Task.sleep(for: deadline)) != nil else { return }
            ending.settle(.deadline)
        }
        let end = await withTaskCancellationHandler { await ending.value } onCancel: { ending.settle(.cancelled) }
        timer.cancel()
        currentDrain.withLockedValue { $0 = nil }
        if end == .resumed { runCallOff() } else { callOff.withLockedValue { $0 = nil } }
        switch end {
        case .resumed:
            return .resumed
        case .deadline:
            logger.warning("drain deadline (\(deadline)) passed with \(registry.openCount) connection(s) open: closing them")
            registry.closeAll()
        case .cancelled:
            registry.closeAll()
        case .drained:
            break
        }
        follower?.stop()
        reporter.withLockedValue { $0?.cancel() }
        inbox?.stop()
        handoff?.close()
        closeListeners()
        let took = (ContinuousClock.now - started).milliseconds
        let received = inbox.map { $0.count > 0 ? "; had taken over \($0.count) connection(s) from the generation before" : "" } ?? ""
        if let (handedOver, closed, _) = handoff?.counts {
            logger.info("worker generation \(worker.generation) drained in \(took) ms: \(handedOver) connection(s) handed over, \(closed) closed\(received)")
        } else {
            logger.info("worker generation \(worker.generation) drained in \(took) ms\(received)")
        }
        return end
    }

    /// The drain is called off: every connection still here stays, and accepting starts again
    /// on the listeners this process still holds.
    private func resume(handoff: ConnectionHandoff?, follower: ControlFollower?) {
        registry.stopDraining()
        follower?.stopRetargeting()
        defer {
            // After accepting again: new clients wait for nobody meanwhile.
            if let handoff {
                takeBack(from: handoff, to: "the next generation")
                handoff.close()
            }
        }
        let generation = worker.generation
        do {
            let (open, closed) = try accepting.withLockedValue { state -> ([Int], [Int]) in
                let open = worker.listeners.indices.filter { !state.closed.contains($0) }
                for index in open { state.acceptors[index] = try makeAcceptor(index) }
                state.started = true
                state.stopped = false
                return (open, state.closed.sorted())
            }
            let names = { (indices: [Int]) in indices.map { self.worker.listeners[$0].name }.joined(separator: ", ") }
            let gone = closed.isEmpty ? "" : "; not on \(names(closed)), closed when the drain began (no other generation served it)"
            logger.notice("worker generation \(generation): drain called off (the generation it drained for is gone): serving again with \(registry.openCount) connection(s) kept, accepting on \(names(open))\(gone)")
        } catch {
            logger.error("worker generation \(generation): drain called off, but cannot accept again: \(error)")
        }
        try? worker.status("generation \(generation) serving again (drain called off)")
    }

    /// Calls the drain under way off, unless that was done already (or it has not stopped
    /// accepting yet: then the drain does it).
    private func runCallOff() {
        callOff.withLockedValue { action in
            defer { action = nil }
            action?()
        }
    }

    /// Closes this process's copy of every listener it still holds.
    private func closeListeners() {
        let listeners = worker.listeners
        accepting.withLockedValue { state in
            for index in listeners.indices where !state.closed.contains(index) {
                listeners[index].close()
                state.closed.insert(index)
            }
        }
    }
}

/// A value the first of several racers settles, awaited by one task.
private final class OneShot<Value: Sendable>: Sendable {
    private struct State: Sendable {
        var value: Value?
        var waiter: CheckedContinuation<Value, Never>?
    }

    private let state = NIOLockedValueBox(State())

    /// Settles the value unless it is settled already; returns whether this call settled it.
    @discardableResult
    func settle(_ value: Value) -> Bool {
        let (settled, waiter) = state.withLockedValue { state -> (Bool, CheckedContinuation<Value, Never>?) in
            guard state.value == nil else { return (false, nil) }
            state.value = value
            defer { state.waiter = nil }
            return (true, state.waiter)
        }
        waiter?.resume(returning: value)
        return settled
    }

    /// The value if it is settled already.
    var settled: Value? { state.withLockedValue { $0.value } }

    /// The value, once settled.
    var value: Value {
        get async {
            await withCheckedContinuation { (waiter: CheckedContinuation<Value, Never>) in
                let settled = state.withLockedValue { state -> Value? in
                    if state.value == nil { state.waiter = waiter }
                    return state.value
                }
                if let settled { waiter.resume(returning: settled) }
            }
        }
    }
}
