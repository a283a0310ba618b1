#if canImport(Glibc)
import Glibc
#endif
import Logging

/// The master's state machine. Every event (trigger, readiness message, child exit, timer) is
/// handled here, one at a time, by the one task that owns this object: no locks, and the order
/// of events is the order they are handled in.
final class MasterLoop {
    typealias Reply = @Sendable (UpgradeOutcome) -> Void

    /// Why a generation is started: the plan comes from `launch()` only for upgrades; restarts
    /// and rollbacks start a release that already ran.
    enum Start {
        /// `announced`: systemd has been told RELOADING=1 already (by the image before a re-execution).
        case upgrade(reason: String, announced: Bool = false)
        case restart(LaunchPlan)
        case rollback(LaunchPlan)
    }

    let master: BatonMaster
    let listeners: ListenerSet
    /// The master's own sockets that a re-execution hands to the next image.
    let sockets: (notify: MasterRecord.Socket, control: MasterRecord.Socket?)
    let spawner: Spawner
    /// Where `configuration.launch()` runs (staging hashes the binary: see ``LaunchThread``).
    let launcher: LaunchThread
    let systemd: SystemdNotifier
    let watcher = ChildWatcher()
    var configuration: MasterConfiguration { master.configuration }
    var logger: Logger { master.logger }

    var generations: [Generation] = [] { didSet { master.publish(generations) } }
    var nextNumber = 1
    /// The generation an upgrade is waiting for, and who waits for its outcome.
    var upgrade: (generation: Int, replies: [Reply])? { didSet { publishProgress() } }
    /// Triggers that came during an upgrade: they become one follow-up upgrade.
    var followUp: (reasons: [String], replies: [Reply])?
    /// The release the serving generation replaced: what a rollback starts.
    var previousPlan: LaunchPlan?
    /// The release of the generation serving now (or last).
    var currentPlan: LaunchPlan?
    var consecutiveFailures = 0
    var restartPending = false
    var shuttingDown = false
    var timers: [Int: Task<Void, Never>] = [:]
    private var nextTimer = 0
    /// The image this master runs, and what became of its re-executions.
    var image: MasterImage
    /// Set between a passed check and the exec: upgrade requests wait, as during an upgrade.
    var reexecPending = false { didSet { publishProgress() } }
    var reexecFailures = 0 { didSet { publishProgress() } }
    var lastReexec: String? { didSet { publishProgress() } }
    /// The state a previous image handed over, adopted at ``run(events:)`` instead of starting.
    var adopted: MasterRecord?
    /// Whether the attempt under way counts in `baton_upgrades_total` (not the first start,
    /// restarts or rollbacks, which have counters of their own).
    private var attemptIsUpgrade = false

    init(master: BatonMaster, listeners: ListenerSet, sockets: (notify: MasterRecord.Socket, control: MasterRecord.Socket?),
         spawner: Spawner, launcher: LaunchThread, systemd: SystemdNotifier, image: MasterImage) {
        self.master = master
        self.systemd = systemd
        self.listeners = listeners
        self.sockets = sockets
        self.spawner = spawner
        self.launcher = launcher
        self.image = image
        publishProgress()
    }

    /// Starts generation 1 (or takes over what a previous image handed over) and handles events
    /// until shutdown has drained every generation. Throws when the first generation cannot
    /// start: there is nothing to keep serving.
    func run(events: AsyncStream<BatonMaster.Event>) async throws {
        defer { for timer in timers.values { timer.cancel() } }
        // Generation 1 never became ready and nothing is left: there is no release to fall back on.
        var firstGenerationFailed: Bool { currentPlan == nil && generations.isEmpty }
        if let record = adopted {
            adopted = nil
            await resume(from: record)
        } else {
            await start(.upgrade(reason: "start"), replies: [])
        }
        if !firstGenerationFailed {
            for await event in events {
                await handle(event)
                if (shuttingDown && generations.isEmpty) || firstGenerationFailed { break }
            }
        }
        if firstGenerationFailed && !shuttingDown { throw MasterError.firstGenerationFailed }
        logger.info("master stopped: every generation has exited")
    }

    private func handle(_ event: BatonMaster.Event) async {
        switch event {
        case .timer(let id, let event):
            timers[id] = nil
            await handle(event)
        case .upgrade(let reason, let reply):
            await requestUpgrade(reason: reason, reply: reply)
        case .notified(let pid, let message):
            notified(pid: pid, message)
        case .exited(let pid, let status):
            await exited(pid: pid, status: status)
        case .readyTimeout(let number):
            readyTimedOut(number)
        case .drainTimeout(let number):
            drainTimedOut(number)
        case .restart:
            restartPending = false
            if !shuttingDown, upgrade == nil, !generations.contains(where: { $0.state == .serving }), let plan = currentPlan {
                await start(.restart(plan), replies: [])
            }
        case .shutdown:
            shutdown()
        case .reexec(let reason, let reply):
            await requestReexec(reason: reason, reply: reply)
        case .execNow:
            await execNow()
        }
    }

    // MARK: Starting generations

    private func requestUpgrade(reason: String, reply: Reply?) async {
        if shuttingDown {
            reply?(.failed(reason: "the master is shutting down"))
            return
        }
        // A trigger nobody waits on (SIGHUP, watch.conf) may take the master along; `baton reload`
        // is routed by BatonMaster.answer, since its answer has to come through the exec.
        if reply == nil, configuration.reexecMasterOnUpgrade, upgrade == nil, !reexecPending, image.changedOnDisk {
            logger.notice("upgrade (\(reason)): the master's own binary \(image.path) changed on disk; re-executing the master, which then upgrades the workers (reexecMasterOnUpgrade)")
            await requestReexec(reason: reason, reply: nil)
            return
        }
        if upgrade != nil || reexecPending {
            var next = followUp ?? ([], [])
            next.reasons.append(reason)
            if let reply { next.replies.append(reply) }
            followUp = next
            logger.info("upgrade requested (\(reason)) while one is running: it will follow")
            return
        }
        await start(.upgrade(reason: reason), replies: reply.map { [$0] } ?? [])
    }

    func start(_ start: Start, replies: [Reply]) async {
        let plan: LaunchPlan
        let reason: String
        attemptIsUpgrade = false
        switch start {
        case .upgrade(let why, let announced):
            reason = why
            attemptIsUpgrade = why != "start"
            if currentPlan != nil, !announced { systemd.reloading("upgrading (\(why))") }
            if let path = master.configIsBeingRead() {
                logger.info("the pending change of \(path) is part of this upgrade (\(why)); it will not trigger another")
            }
            do {
                plan = try await launcher.run(configuration.launch)
            } catch {
                finishUpgrade(.failed(reason: "\(error)"), replies: replies)
                return
            }
            if let current = currentPlan { logger.notice("upgrade (\(why)): \(Self.changes(from: current, to: plan))") }
        case .restart(let previous):
            (plan, reason) = (previous, "restart")
            master.metrics.restarted()
        case .rollback(let previous):
            (plan, reason) = (previous, "rollback")
            master.metrics.rolledBack()
        }
        let number = nextNumber
        let pid: pid_t
        let given: [Listener]
        var control: WorkerControl?
        var inbox: ConnectionInbox?
        do {
            given = try listeners.listeners(for: plan.listen)
            control = try WorkerControl.make()
            inbox = try ConnectionInbox.make()
            let environment = WorkerEnvironment.make(
                inherited: ProcessEnvironment.current(), plan: plan, listeners: given,
                generation: number, notifySocketPath: sockets.notify.path, masterPID: getpid(), control: true)
            // The worker has its copies now (or never will).
            defer { close(control!.workerEnd); close(inbox!.receiverEnd) }
            pid = try await spawner.spawn(plan, environment: environment, listeners: given, extra: [control!.workerEnd, inbox!.receiverEnd])
            do {
                try watcher.watch(pid) { [master] pid, status in master.post(.exited(pid, status)) }
            } catch {
                // A child we cannot watch is a child we cannot manage: take it down now.
                kill(pid, SIGKILL)
                var status: Int32 = 0
                waitpid(pid, &status, 0)
                throw error
            }
        } catch {
            if let control { close(control.masterEnd) }
            if let inbox { close(inbox.senderEnd) }
            finishUpgrade(.failed(reason: "generation \(number) (version \(plan.version)): \(error)"), replies: replies)
            return
        }
        nextNumber += 1
        let generation = Generation(number: number, pid: pid, version: plan.version, state: .starting, startedAt: .now,
                                    plan: plan, listeners: given, control: control!.masterEnd, inbox: inbox!.senderEnd)
        generations.append(generation)
        upgrade = (number, replies)
        logger.info("\(generation.label) starting (\(reason)): \(plan.executable)")
        after(configuration.readyTimeout) { .readyTimeout(generation: number) }
        if case .uptime(let delay) = configuration.readiness {
            after(delay) { .notified(pid, NotifyMessage([("READY", "1"), ("STATUS", "up for \(delay.shortDescription)")])) }
        }
    }

    /// Ends the running upgrade attempt (if any), tells whoever asked, and starts the follow-up.
    func finishUpgrade(_ result: UpgradeOutcome, replies: [Reply]) {
        var outcome = result
        if attemptIsUpgrade {
            if case .succeeded = result { master.metrics.upgradeFinished(succeeded: true) } else { master.metrics.upgradeFinished(succeeded: false) }
            attemptIsUpgrade = false
        }
        switch result {
        case .succeeded:
            logger.info("\(outcome)")
        case .failed(let reason):
            outcome = .failed(reason: reason + servingSummary)
            logger.error("\(outcome)")
        }
        for reply in replies { reply(outcome) }
        master.publish(outcome)
        upgrade = nil
        closeUnusedListeners()
        if !shuttingDown, currentPlan != nil { systemd.ready("\(outcome)") }
        if !reexecPending, image.changedOnDisk, case .succeeded = outcome {
            logger.notice("the master's own binary \(image.path) changed on disk since it started; send SIGUSR2 or run `baton reload --master` to run the new one")
        }
        if case .failed = outcome, !generations.contains(where: { $0.state == .serving }) {
            scheduleRestart()
        }
        startFollowUp()
        reportReleasesInUse()
    }

    /// Turns the triggers that waited into one upgrade.
    func startFollowUp() {
        if let next = followUp, !shuttingDown, !reexecPending {
            followUp = nil
            let reasons = next.reasons.joined(separator: ", ")
            let replies = next.replies
            var combined: Reply?
            if !replies.isEmpty {
                combined = { @Sendable (outcome: UpgradeOutcome) in
                    for reply in replies { reply(outcome) }
                }
            }
            master.post(.upgrade(reason: "follow-up of \(reasons)", reply: combined))
        }
    }

    /// What differs between two plans, for the log.
    static func changes(from old: LaunchPlan, to new: LaunchPlan) -> String {
        var changes: [String] = []
        if old.version != new.version { changes.append("version \(old.version) → \(new.version)") }
        if old.executable != new.executable { changes.append("executable \(old.executable) → \(new.executable)") }
        if let listen = new.listen, listen != old.listen {
            changes.append("listen \((old.listen ?? []).map(\.description).joined(separator: ", ")) → \(listen.map(\.description).joined(separator: ", "))")
        }
        if old.arguments != new.arguments { changes.append("arguments changed") }
        if old.environment != new.environment { changes.append("environment changed") }
        return changes.isEmpty ? "same release and settings as the serving generation (restarting it)" : changes.joined(separator: "; ")
    }

    /// Who waits for the outcome of generation `number`, if the running upgrade started it.
    private func replies(waitingFor number: Int) -> [Reply] {
        upgrade?.generation == number ? upgrade!.replies : []
    }

    private var servingSummary: String {
        let serving = generations.filter { $0.state == .serving }
        return serving.isEmpty ? "; no generation is serving" : "; \(serving.map(\.label).joined(separator: ", ")) keeps serving"
    }

    // MARK: Readiness

    private func notified(pid: pid_t, _ message: NotifyMessage) {
        guard let index = generations.firstIndex(where: { $0.pid == pid }) else {
            logger.debug("ignoring notify message from pid \(pid), not a worker: \(message.text)")
            return
        }
        if let status = message.status {
            generations[index].status = status
            logger.debug("\(generations[index].label) status: \(status)")
        }
        guard message.isReady, generations[index].state == .starting else { return }
        let now = ContinuousClock.Instant.now
        generations[index].state = .serving
        generations[index].readyAt = now
        generations[index].takesConnections = message.takesConnections
        master.metrics.ready(after: generations[index].startedAt.duration(to: now))
        consecutiveFailures = 0
        let ready = generations[index]
        var draining: [Int] = []
        for other in generations.indices where other != index && generations[other].state == .serving {
            beginDrain(other, successor: index)
            draining.append(generations[other].number)
        }
        // Only the generations it replaces now may send it connections (they hold their own
        // copies): once they are done, its inbox reports that no sender is left, which a draining
        // worker waits for before it exits with connections still queued there.
        if generations[index].inbox >= 0 {
            close(generations[index].inbox)
            generations[index].inbox = -1
        }
        if currentPlan != ready.plan {
            previousPlan = currentPlan
            currentPlan = ready.plan
        }
        if let change = listeners.makeCurrent(ready.listeners) { logger.notice("\(change)") }
        finishUpgrade(.succeeded(generation: ready.number, pid: ready.pid, version: ready.version,
                                 readyAfter: ready.startedAt.duration(to: now), draining: draining),
                      replies: replies(waitingFor: ready.number))
    }

    private func readyTimedOut(_ number: Int) {
        guard let index = generations.firstIndex(where: { $0.number == number && $0.state == .starting }) else { return }
        let generation = generations[index]
        kill(generation.pid, SIGKILL)
        generations[index].state = .abandoned
        finishUpgrade(.failed(reason: "\(generation.label) was not ready within \(configuration.readyTimeout.shortDescription); killed it"),
                      replies: replies(waitingFor: number))
    }

    // MARK: Draining and exits

    /// Sends generation `index` its drain orders and SIGTERM. When `successor` (the generation
    /// that just became ready) takes connections and the drainer can hand them over, the orders
    /// carry the successor's connection inbox.
    func beginDrain(_ index: Int, successor: Int? = nil) {
        generations[index].state = .draining
        generations[index].drainStartedAt = .now
        // First what the worker must know to drain well: which queues others go on serving.
        let accepting = Set(generations.filter { $0.state == .starting || $0.state == .serving }.flatMap(\.listeners))
        let shared = generations[index].listeners.indices.filter { listeners.adopted || accepting.contains(generations[index].listeners[$0]) }
        var orders = DrainOrders(sharedListeners: Set(shared))
        var keepAlives = ""
        if let successor {
            let (old, new) = (generations[index], generations[successor])
            if !new.takesConnections || new.inbox < 0 {
                keepAlives = "; \(new.label) does not take connections over (no BATON_HANDOFF=1: a worker in another language or an older release), so keep-alive connections are closed gracefully"
            } else if !old.takesConnections {
                keepAlives = "; it cannot hand connections over (an older release or another language), so keep-alive connections are closed gracefully"
            } else {
                orders.connectionInbox = new.inbox
                keepAlives = "; idle keep-alive connections go to generation \(new.number)"
            }
        }
        _ = WorkerControl.send(orders, on: generations[index].control)
        kill(generations[index].pid, SIGTERM)
        let number = generations[index].number
        logger.info("\(generations[index].label) draining (SIGTERM)\(keepAlives)")
        after(configuration.drainTimeout) { .drainTimeout(generation: number) }
    }

    private func drainTimedOut(_ number: Int) {
        guard let generation = generations.first(where: { $0.number == number && $0.state == .draining }) else { return }
        logger.warning("\(generation.label) did not drain within \(configuration.drainTimeout.shortDescription); sending SIGKILL")
        kill(generation.pid, SIGKILL)
    }

    private func exited(pid: pid_t, status: ExitStatus) async {
        guard let index = generations.firstIndex(where: { $0.pid == pid }) else { return }
        let generation = generations.remove(at: index)
        close(generation.control)
        if generation.inbox >= 0 { close(generation.inbox) }
        defer { closeUnusedListeners() }
        switch generation.state {
        case .starting:
            finishUpgrade(.failed(reason: "\(generation.label) exited at start with \(status)"),
                          replies: replies(waitingFor: generation.number))
        case .abandoned:
            logger.debug("\(generation.label) reaped after being killed (\(status))")
        case .draining:
            if let started = generation.drainStartedAt { master.metrics.drained(after: started.duration(to: .now)) }
            let took = generation.drainStartedAt.map { $0.duration(to: .now).shortDescription } ?? "?"
            logger.info("\(generation.label) drained in \(took) (\(status))")
        case .serving:
            await servingGenerationDied(generation, status: status)
        }
    }

    /// A generation that was serving died by itself: roll back if it had just taken over,
    /// otherwise restart its release, unless another generation serves or is starting.
    private func servingGenerationDied(_ generation: Generation, status: ExitStatus) async {
        let alive = generations.contains { $0.state == .serving || $0.state == .starting }
        let uptime = generation.readyAt.map { $0.duration(to: .now) } ?? .zero
        if !shuttingDown, uptime < configuration.probation, let previous = previousPlan, previous != generation.plan,
           generation.plan == currentPlan, upgrade == nil {
            logger.critical("ROLLBACK: \(generation.label) died \(uptime.shortDescription) after taking over (\(status)), within the \(configuration.probation.shortDescription) probation; starting the previous release (version \(previous.version)) again")
            previousPlan = nil
            currentPlan = previous
            await start(.rollback(previous), replies: [])
            return
        }
        logger.error("\(generation.label) exited unexpectedly with \(status)")
        if !alive { scheduleRestart() }
    }

    private func scheduleRestart() {
        guard !shuttingDown, !restartPending, currentPlan != nil else { return }
        let backoff = configuration.restartBackoff
        var delay = backoff.first
        for _ in 0..<min(consecutiveFailures, 20) where delay < backoff.max { delay *= 2 }
        delay = min(delay, backoff.max)
        consecutiveFailures += 1
        restartPending = true
        logger.warning("no generation is serving: starting one again in \(delay.shortDescription) (clients queue on the listener meanwhile)")
        after(delay) { .restart }
    }

    /// Closes the master's copy of every listener that no starting or serving generation uses:
    /// a draining generation has stopped accepting, and a socket kept open for it would only
    /// queue connections nobody accepts (reset later, instead of refused now).
    private func closeUnusedListeners() {
        let accepting = generations.filter { $0.state == .starting || $0.state == .serving }
        let closed = listeners.closeUnused(inUse: accepting.flatMap(\.listeners))
        if !closed.isEmpty { logger.notice("closed listener(s) no generation uses any more: \(closed.joined(separator: ", "))") }
    }

    private func reportReleasesInUse() {
        guard let report = configuration.onReleasesInUse else { return }
        report(Set((generations.map(\.plan) + [currentPlan, previousPlan].compactMap { $0 }).map(\.executable)))
    }

    // MARK: Shutdown

    private func shutdown() {
        guard !shuttingDown else { return }
        shuttingDown = true
        logger.info("shutting down: draining \(generations.count) generation(s)")
        systemd.stopping("draining \(generations.count) generation(s)")
        if let upgrade { for reply in upgrade.replies { reply(.failed(reason: "the master is shutting down")) } }
        if let followUp { for reply in followUp.replies { reply(.failed(reason: "the master is shutting down")) } }
        upgrade = nil
        followUp = nil
        let stopping = generations.indices.filter { generations[$0].state != .draining && generations[$0].state != .abandoned }
        // All of them first: none may be told that another (about to stop too) serves its queue.
        for index in stopping { generations[index].state = .draining }
        for index in stopping { beginDrain(index) }
    }

    /// Posts `event` after `delay`, unless the loop has ended by then.
    func after(_ delay: Duration, _ event: @escaping @Sendable () -> BatonMaster.Event) {
        let id = nextTimer
        nextTimer += 1
        let master = self.master
        timers[id] = Task {
            guard (try? await Task.sleep(for: delay)) != nil else { return }
            master.post(.timer(id: id, event()))
        }
    }
}

/// Why a master stopped.
public enum MasterError: Error, CustomStringConvertible {
    case firstGenerationFailed

    public var description: String {
        switch self {
        case .firstGenerationFailed: return "the first generation did not start; see the log above"
        }
    }
}
