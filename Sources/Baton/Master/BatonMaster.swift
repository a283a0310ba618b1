#if canImport(Glibc)
import Glibc
#endif
import CBaton
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle
import UnixSignals

/// The master process: owns the listeners, starts each generation of workers on them, and keeps
/// one pid for its whole life.
///
/// Run it as a `Service` in a `ServiceGroup` (SIGTERM/SIGINT as graceful-shutdown signals): it
/// binds (or adopts from systemd) its listeners, starts generation 1, upgrades on SIGHUP or
/// ``requestUpgrade(reason:)``, restarts a worker that dies by itself, and on graceful shutdown
/// drains every generation and returns.
///
/// ```swift
/// let master = BatonMaster(configuration: configuration, logger: logger)
/// let group = ServiceGroup(configuration: .init(
///     services: [.init(service: master, successTerminationBehavior: .gracefullyShutdownGroup)],
///     gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
/// try await group.run()   // what Baton.runMaster(_:logger:) does
/// ```
public final class BatonMaster: Service, Sendable {
    /// Something that happened, for the master's single event loop.
    enum Event: Sendable {
        /// An upgrade trigger; `reply` gets the outcome (or the answer of the re-execution it became).
        /// With `canary`, the new release starts as a canary.
        case trigger(reason: String, reply: MasterLoop.Reply?, canary: CanaryRequest? = nil)
        /// `baton promote` / `baton abort`: `reply` gets the canary upgrade's outcome.
        case endCanary(promote: Bool, reply: MasterLoop.Reply?)
        /// Re-execute the master's binary in place (SIGUSR2, `baton reload --master`).
        case reexec(reason: String, reply: MasterLoop.Reply?)
        /// Anything else the state machine takes as it comes.
        case machine(MasterStateMachine.Event)
    }

    let configuration: MasterConfiguration
    let logger: Logger
    /// What `baton metrics` and the metrics endpoint report.
    let metrics = MasterMetrics()
    private let events: AsyncStream<Event>
    private let continuation: AsyncStream<Event>.Continuation
    /// What the loop last published, for `status` and the public properties.
    private let snapshot = NIOLockedValueBox<MasterSnapshot?>(nil)
    private let watcherBox = NIOLockedValueBox<ConfigWatcher?>(nil)
    private let processStart = NIOLockedValueBox(ContinuousClock.now)
    /// When this process started (before any re-execution of its image).
    var processStartedAt: ContinuousClock.Instant { processStart.withLockedValue { $0 } }

    /// A master that does nothing until ``run()``.
    public init(configuration: MasterConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        (self.events, self.continuation) = AsyncStream.makeStream(of: Event.self)
    }

    /// Whether this process is handed its listeners instead of binding them: by systemd socket
    /// activation, or by a previous image of this master (a re-execution, or the check before
    /// one). A command line that insists on listen addresses should accept their absence then.
    public static var inheritsListeners: Bool {
        let environment = ProcessEnvironment.current()
        return [WorkerEnvironment.listenFDs, MasterRecord.environmentKey, MasterCheck.environmentKey].contains { environment[$0] != nil }
    }

    /// The generations alive now, oldest first.
    public var generations: [Generation] { snapshot.withLockedValue { $0?.generations ?? [] } }

    /// The outcome of the last upgrade, restart or rollback.
    public var lastUpgrade: UpgradeOutcome? { snapshot.withLockedValue { $0?.lastUpgrade } }

    /// Asks for an upgrade and waits for its outcome. Requests made while an upgrade runs are
    /// coalesced into one follow-up upgrade, whose outcome they all receive.
    ///
    /// With ``MasterConfiguration/reexecMasterOnUpgrade`` and a new master binary on disk, the
    /// upgrade starts with a re-execution of this process: then the outcome says so, and the
    /// workers' upgrade follows in the new image.
    public func requestUpgrade(reason: String) async -> UpgradeOutcome {
        switch await ask({ .trigger(reason: reason, reply: $0) }) {
        case .upgrade(let outcome), .canary(_, let outcome):
            return outcome
        case .reexec(.refused(let why)):
            return .failed(reason: "master re-execution refused: \(why)")
        case .reexec(.accepted(let message)):
            continuation.yield(.machine(.execNow))
            return .failed(reason: "superseded: \(message)")
        }
    }

    /// Posts the event `make` builds around a reply, and waits for the reply.
    private func ask(_ make: (@escaping MasterLoop.Reply) -> Event) async -> MasterStateMachine.Reply {
        await withCheckedContinuation { (reply: CheckedContinuation<MasterStateMachine.Reply, Never>) in
            let event = make { reply.resume(returning: $0) }
            if case .terminated = continuation.yield(event) {
                if case .reexec = event {
                    reply.resume(returning: .reexec(.refused("the master is not running")))
                } else {
                    reply.resume(returning: .upgrade(.failed(reason: "the master is not running")))
                }
            }
        }
    }

    /// Binds the listeners, starts generation 1 and serves triggers until graceful shutdown has
    /// drained every generation. Throws when the listeners cannot be bound or generation 1 never
    /// becomes ready.
    ///
    /// After a re-execution of the master (same pid, new image) it takes over instead what the
    /// previous image handed over: listeners, sockets and generations. In the check mode that
    /// precedes such an exec (`MasterCheck`) it answers and exits the process before anything.
    public func run() async throws {
        MasterCheck.answerIfAsked()
        let respawned = MasterRespawn.takeMarker()
        var record: MasterRecord?
        do {
            record = try MasterRecord.takeFromEnvironment()
        } catch {
            logger.critical("cannot take over from the previous master image: \(error)")
            throw error
        }
        var keeper: DescriptorKeeper?
        var adoption: (from: Int32, lostGenerations: [Int])?
        if let kept = record?.keeper {
            // A re-execution: the keeper goes on, with the same descriptors at the same numbers.
            _ = fcntl(kept.link, F_SETFD, FD_CLOEXEC)
            keeper = DescriptorKeeper.resume(adoptPath: kept.adoptPath, successorTimeout: .milliseconds(kept.successorTimeoutMilliseconds),
                                             link: kept.link, pid: kept.pid, names: Dictionary(kept.names.map { ($0.value, $0.key) }, uniquingKeysWith: { a, _ in a }))
        } else if record == nil, let control = configuration.controlSocket, configuration.successorTimeout > .zero {
            let adoptPath = Adoption.socketPath(besideControlSocket: control)
            switch try Adoption.ask(at: adoptPath) {
            case .nobody:
                break
            case .masterAlive(let pid):
                throw BatonError.system("another master (pid \(pid)) runs here: its keeper answers at \(adoptPath)", EADDRINUSE)
            case .kit(let link, let kit):
                if let adopted = try adopt(kit, link: link, adoptPath: adoptPath) {
                    (record, keeper, adoption) = (adopted.record, adopted.keeper, (adopted.from, adopted.lost))
                }
            }
        }
        if adoption != nil, let passed = try? SocketActivation.adoptListeners() {
            // systemd passes a .socket unit's listeners to each start: the adopted ones are the same sockets.
            for listener in passed { close(listener.fd) }
            logger.info("socket activation passed \(passed.count) listener(s) again: closed, the adopted copies of the same sockets serve")
        }
        let systemd = SystemdNotifier.fromEnvironment(logger: logger)
        if respawned {
            // systemd did not start this process: under ExitType=cgroup the unit stayed active
            // with no main process since the last one died; this one claims it.
            logger.notice("started again by the keeper after master pid \(adoption.map { String($0.from) } ?? "?") died")
            systemd.send([("MAINPID", String(getpid()))])
        }
        let listeners = try record.map { try ListenerSet(adopting: $0, backlog: configuration.backlog) }
            ?? ListenerSet(initial: try openListeners(), backlog: configuration.backlog)
        let continuation = self.continuation
        let spawner = Spawner()
        let launcher = LaunchThread()
        var notify: NotifySocket?
        var watcher: ConfigWatcher?
        var control: ControlServer?
        var metricsEndpoint: MetricsEndpoint?
        do {
            let onMessage: @Sendable (pid_t, NotifyMessage) -> Void = { pid, message in continuation.yield(.machine(.notified(pid: pid, message))) }
            if let record {
                notify = try NotifySocket(adopting: record.notify.fd, path: record.notify.path, onMessage: onMessage)
            } else {
                notify = try NotifySocket(onMessage: onMessage)
            }
            watcher = try configuration.watchFile.map { path in
                try ConfigWatcher(path: path, quietPeriod: configuration.watchQuietPeriod) {
                    continuation.yield(.trigger(reason: "\(path) changed", reply: nil))
                }
            }
            if let watcher { logger.info("watching \(watcher.path) for deploys") }
            watcherBox.withLockedValue { $0 = watcher }
            if let address = configuration.metricsListen {
                guard !configuration.listen.contains(address) && !listeners.bound.contains(where: { $0.address == address }) else {
                    throw BatonError.invalidAddress(address.description, "the metrics address must not be one of the app's listeners")
                }
                do {
                    let metrics = self.metrics
                    metricsEndpoint = try await MetricsEndpoint.start(on: address) { metrics.text() }
                    logger.info("metrics on http://\(metricsEndpoint!.address)/metrics")
                } catch {
                    logger.error("no metrics endpoint on \(address): \(error); `baton metrics` still answers")
                }
            }
            if let adopted = record?.control {
                control = try await ControlServer.adopt(fd: adopted.fd, path: adopted.path)
            } else {
                control = await bindControlSocket()
            }
            if keeper == nil, let control, configuration.successorTimeout > .zero {
                let adoptPath = Adoption.socketPath(besideControlSocket: control.path)
                do {
                    keeper = try DescriptorKeeper.start(adoptPath: adoptPath, successorTimeout: configuration.successorTimeout)
                    logger.info("keeper pid \(keeper!.pid) holds the listeners and workers' channels for a successor (\(adoptPath)); the workers outlive this master by \(configuration.successorTimeout.shortDescription)")
                } catch {
                    logger.error("no keeper: \(error); if this master dies, its workers drain at once")
                }
            }
            var image = MasterImage.current()
            if let record, adoption == nil {
                image = MasterImage.current(executions: record.image.executions, arguments: record.image.arguments, path: record.image.path)
                processStart.withLockedValue { $0 = record.instant(age: record.image.processAge) }
            }
            if let keeper {
                do {
                    try keeper.setRespawn(configuration.respawnMaster ? .of(image, notifySocket: systemd.socket) : nil)
                    if configuration.respawnMaster {
                        logger.info("if this master dies outright, its keeper starts \(image.path) again, which adopts the workers")
                    }
                } catch {
                    logger.error("\(error): if this master dies outright, nothing starts it again")
                }
            } else if configuration.respawnMaster {
                logger.error("--respawn-master: no keeper (it needs a control socket and a successor timeout), so nothing starts this master again if it dies")
            }
            let loop = try MasterLoop(master: self, listeners: listeners,
                                      sockets: (notify: .init(fd: notify!.fd, path: notify!.path), control: control.map { .init(fd: $0.fd, path: $0.path) }),
                                      spawner: spawner, launcher: launcher, systemd: systemd, image: image, record: record,
                                      keeper: keeper, adoption: adoption)
            try await serve(loop, control: control)
        } catch {
            await release()
            throw error
        }
        await release()

        func release() async {
            keeper?.bye()
            watcher?.stop()
            notify?.close()
            await control?.close()
            await metricsEndpoint?.close()
            listeners.closeAll()
            await spawner.shutdown()
            await launcher.shutdown()
        }
    }

    /// Runs the loop with its triggers (SIGHUP, control socket) until it ends.
    private func serve(_ loop: MasterLoop, control: ControlServer?) async throws {
        let continuation = self.continuation
        let events = self.events
        // Trapped before anything else runs: after a re-execution they are ignored until now.
        let signals = await UnixSignalsSequence(trapping: .sighup, .sigusr2)
        try await withGracefulShutdownHandler {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await signal in signals {
                        if signal == .sigusr2 {
                            continuation.yield(.reexec(reason: "SIGUSR2", reply: nil))
                        } else {
                            continuation.yield(.trigger(reason: "SIGHUP", reply: nil))
                        }
                    }
                }
                if let control {
                    let logger = self.logger
                    group.addTask { await control.serve(logger: logger) { await self.answer($0) } }
                }
                defer { group.cancelAll() }
                try await loop.run(events: events)
            }
        } onGracefulShutdown: {
            continuation.yield(.machine(.shutdown))
        }
    }

    /// Takes over what the keeper of a dead master handed over: the record, renumbered to the
    /// descriptors as they arrived. Nil when the keeper held no record (its master died before
    /// writing one): it is told to let go, and this master starts afresh. Throws when the record
    /// cannot be read or lacks a listener: the keeper then waits for the next successor.
    private func adopt(_ kit: [String: Int32], link: Int32, adoptPath: String) throws
        -> (record: MasterRecord, keeper: DescriptorKeeper, from: Int32, lost: [Int])? {
        var held: [Int32: String] = [:]
        for (name, fd) in kit where name != "record" { held[fd] = name }
        let keeper = DescriptorKeeper.resume(adoptPath: adoptPath, successorTimeout: configuration.successorTimeout, link: link,
                                             pid: baton_peer_pid(link), names: held)
        guard let recordFD = kit["record"] else {
            logger.warning("the keeper at \(adoptPath) (pid \(keeper.pid)) held no master record: it lets go, and this master starts afresh")
            for fd in held.keys { close(fd) }
            keeper.bye()
            return nil
        }
        lseek(recordFD, 0, SEEK_SET)
        let written = try MasterRecord.read(from: recordFD)
        close(recordFD)
        let (record, lost) = try written.renumbered(by: kit)
        var used = Set(record.listeners.map(\.fd) + [record.notify.fd] + (record.control.map { [$0.fd] } ?? []))
        for entry in record.generations { used.formUnion([entry.control, entry.inbox ?? -1, entry.pidfd ?? -1].filter { $0 >= 0 }) }
        for (fd, name) in held where !used.contains(fd) {
            // A worker the record does not name was spawned after its last write: nobody can
            // manage it, so it goes now (its channels close with it).
            if name.hasPrefix("pid.") {
                logger.warning("the dead master's worker \(name.dropFirst(4)) is not in its record (started just before it died): stopping it")
                _ = baton_pidfd_send_signal(fd, SIGKILL)
            }
            keeper.remove(fd)
            close(fd)
        }
        processStart.withLockedValue { $0 = .now }
        return (record, keeper, written.masterPID ?? 0, lost)
    }

    /// Without a control socket the master still serves and upgrades on SIGHUP and watch.conf:
    /// a problem here is logged, not fatal.
    private func bindControlSocket() async -> ControlServer? {
        guard let path = configuration.controlSocket else { return nil }
        do {
            let control = try await ControlServer.bind(path: path)
            logger.info("control socket \(control.path) (mode 0600)")
            return control
        } catch {
            logger.error("no control socket: \(error); `baton reload|status|stop` cannot reach this master")
            return nil
        }
    }

    /// Answers one control request; the action, if any, runs once the answer is delivered.
    func answer(_ request: ControlProtocol.Request) async -> (ControlProtocol.Response, (@Sendable () -> Void)?) {
        switch request.command {
        case "reload":
            let before = status()
            let reason = request.canary == nil ? "baton reload" : "baton reload --canary"
            switch await ask({ .trigger(reason: reason, reply: $0, canary: request.canary) }) {
            case .upgrade(let outcome):
                if case .succeeded = outcome { return (.init(ok: true, message: outcome.description), nil) }
                return (.init(ok: false, message: outcome.description), nil)
            case .canary(let verdict, let outcome):
                return (Self.canaryResponse(verdict: verdict, outcome: outcome), nil)
            case .reexec(let answer):
                return reexecResponse(answer, before: before)
            }
        case "promote", "abort":
            switch await ask({ .endCanary(promote: request.command == "promote", reply: $0) }) {
            case .canary(let verdict, let outcome):
                return (Self.canaryResponse(verdict: verdict, outcome: outcome), nil)
            case .upgrade(let outcome):
                return (.init(ok: false, message: outcome.description), nil)
            case .reexec:
                return (.init(ok: false, message: "no canary is running"), nil)
            }
        case "reload-master":
            let before = status()
            guard case .reexec(let answer) = await ask({ .reexec(reason: "baton reload --master", reply: $0) }) else {
                return (.init(ok: false, message: "master re-execution: no answer"), nil)
            }
            return reexecResponse(answer, before: before)
        case "status":
            return (.init(ok: true, message: "master pid \(getpid())", status: status()), nil)
        case "metrics":
            return (.init(ok: true, message: metrics.text()), nil)
        case "stop":
            // Once the answer is out: with nothing to drain the master could exit before writing it.
            return (.init(ok: true, message: "master pid \(getpid()) is draining every generation and stopping", status: status()),
                    { [continuation] in continuation.yield(.machine(.shutdown)) })
        default:
            return (.init(ok: false, message: "unknown command '\(request.command)' (expected reload, reload-master, promote, abort, status, metrics or stop)"), nil)
        }
    }

    /// The answer at the end of a canary upgrade: ok when it was promoted and took over.
    private static func canaryResponse(verdict: String, outcome: UpgradeOutcome) -> ControlProtocol.Response {
        var promoted = false
        if case .succeeded = outcome { promoted = true }
        let message = promoted ? "canary \(verdict)\n\(outcome)" : "\(outcome)"
        return .init(ok: promoted, message: message, canary: promoted ? "promoted" : "rolled_back")
    }

    /// The answer to a re-execution request; once it is delivered, the exec follows. It carries
    /// the counts the client watches in `status` to learn the outcome.
    private func reexecResponse(_ answer: ReexecAnswer, before: ControlProtocol.MasterStatus) -> (ControlProtocol.Response, (@Sendable () -> Void)?) {
        switch answer {
        case .refused(let why):
            return (.init(ok: false, message: "master re-execution refused: \(why)", status: status()), nil)
        case .accepted(let message):
            let ticket = ControlProtocol.ReexecTicket(executions: before.image?.executions ?? 0, failures: before.reexecFailures ?? 0)
            return (.init(ok: true, message: message, status: before, reexec: ticket), { [continuation] in continuation.yield(.machine(.execNow)) })
        }
    }

    /// A snapshot for `status`.
    package func status() -> ControlProtocol.MasterStatus {
        let now = ContinuousClock.now
        func seconds(_ duration: Duration) -> Double { Double(duration.milliseconds) / 1000 }
        let snapshot = self.snapshot.withLockedValue { $0 }
        let lastUpgrade = snapshot?.lastUpgrade
        var succeeded: Bool?
        if let lastUpgrade { if case .succeeded = lastUpgrade { succeeded = true } else { succeeded = false } }
        return .init(
            masterPID: getpid(), uptimeSeconds: seconds(processStartedAt.duration(to: now)),
            generations: (snapshot?.generations ?? []).map {
                .init(generation: $0.number, pid: $0.pid, version: $0.version, state: $0.state.rawValue,
                      ageSeconds: seconds($0.startedAt.duration(to: now)), status: $0.status, connections: $0.connections)
            },
            lastUpgrade: lastUpgrade?.description,
            lastUpgradeSucceeded: succeeded,
            image: snapshot.map {
                .init(path: $0.image.path, batonVersion: Baton.version, executions: $0.image.executions,
                      ageSeconds: seconds($0.image.startedAt.duration(to: now)), changedOnDisk: $0.image.changedOnDisk)
            },
            upgradeRunning: snapshot?.busy,
            reexecFailures: snapshot?.reexecFailures,
            lastReexec: snapshot?.lastReexec,
            canary: snapshot?.canary,
            lastCanary: snapshot?.lastCanary,
            adoptions: snapshot?.adoptions,
            lastAdoption: snapshot?.lastAdoption)
    }

    private func openListeners() throws -> [(address: ListenAddress?, listener: Listener)] {
        if let inherited = try SocketActivation.adoptListeners() {
            logger.info("adopted \(inherited.count) listener(s) from socket activation: \(inherited.map(\.name).joined(separator: ", ")); every generation gets these (listen addresses and HttpPort are not bound)")
            return inherited.map { (nil, $0) }
        }
        var bound: [(address: ListenAddress?, listener: Listener)] = []
        do {
            for (index, address) in configuration.listen.enumerated() {
                let names = configuration.listenerNames
                let name = names.count == 1 ? names[0] : index < names.count ? names[index] : nil
                let listener = try Listener.bind(address, name: name, backlog: configuration.backlog)
                bound.append((address, listener))
                let shown = (try? listener.localAddress()).map { "\($0)" } ?? address.description
                logger.info("listening on \(address) (\(shown), fd \(listener.fd), backlog \(configuration.backlog))")
            }
        } catch {
            for entry in bound { entry.listener.close() }
            throw error
        }
        return bound
    }

    /// Asks for an upgrade without waiting for it (as SIGHUP does).
    public func triggerUpgrade(reason: String) {
        continuation.yield(.trigger(reason: reason, reply: nil))
    }

    func post(_ event: Event) { continuation.yield(event) }

    /// An upgrade reads the watched file now: a change to it that waits out its quiet period is
    /// covered by this upgrade and must not trigger another one (a deploy that writes watch.conf
    /// and then runs `baton reload`). Returns the watched path when a change was pending.
    func configIsBeingRead() -> String? {
        guard let watcher = watcherBox.withLockedValue({ $0 }) else { return nil }
        return watcher.absorbPendingChanges() ? watcher.path : nil
    }

    func publish(_ snapshot: MasterSnapshot) {
        let changed = self.snapshot.withLockedValue { current -> Bool in
            defer { current = snapshot }
            return current?.generations != snapshot.generations
        }
        if changed { metrics.update(snapshot.generations) }
    }
}

/// What the master's loop publishes after each event, for `status` and the metrics.
struct MasterSnapshot: Sendable {
    var generations: [Generation]
    var lastUpgrade: UpgradeOutcome?
    /// An upgrade or a re-execution is under way.
    var busy: Bool
    var reexecFailures: Int
    var lastReexec: String?
    var image: MasterImage
    /// The canary window under way.
    var canary: String?
    var lastCanary: String?
    var adoptions: Int
    var lastAdoption: String?

    init(_ machine: MasterStateMachine, image: MasterImage) {
        generations = machine.generations
        lastUpgrade = machine.lastUpgrade
        busy = machine.isBusy
        reexecFailures = machine.reexecFailures
        lastReexec = machine.lastReexec
        self.image = image
        canary = machine.canaryStatus
        lastCanary = machine.lastCanary
        adoptions = machine.adoptions
        lastAdoption = machine.lastAdoption
    }
}
