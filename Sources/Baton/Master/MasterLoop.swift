#if canImport(Glibc)
import Glibc
#endif
import CBaton
import Logging

/// Carries out what ``MasterStateMachine`` decides: one task owns this object and feeds the
/// machine one event at a time (so no locks), performs the actions it returns, and feeds the
/// result of each action that has one (a launch, a spawn, a check, a failed exec) straight back,
/// before the next event. It decides nothing itself.
final class MasterLoop {
    typealias Reply = @Sendable (MasterStateMachine.Reply) -> Void

    private(set) var machine: MasterStateMachine
    let master: BatonMaster
    let listeners: ListenerSet
    /// The master's own sockets that a re-execution hands to the next image.
    let sockets: (notify: MasterRecord.Socket, control: MasterRecord.Socket?)
    let spawner: Spawner
    /// Where `configuration.launch()` runs (staging hashes the binary: see ``LaunchThread``).
    let launcher: LaunchThread
    let systemd: SystemdNotifier
    let watcher = ChildWatcher()
    /// The image this master runs.
    let image: MasterImage
    /// The master's ends of each generation's channels, by generation number.
    var channels: [Int: WorkerChannels] = [:]
    private var waiting: [Int: Reply] = [:]
    private var nextToken = 0
    private var timers: [MasterStateMachine.Timer: Task<Void, Never>] = [:]
    /// Who wrote the record this image took over (a Baton version), if it took one over.
    private let adopted: String?
    /// Holds a copy of every descriptor a successor needs, if this master has one.
    let keeper: DescriptorKeeper?
    /// The master that died, when this one adopted its workers, and the generations whose
    /// channels did not come back.
    private let adoption: (from: Int32, lostGenerations: [Int])?
    /// The watched deploy file as last read for a launch (``ConfigStamp``); from the record
    /// until this master launches.
    var configStamp: ConfigStamp?
    /// A pidfd on this process, which adopted workers watch.
    private lazy var ownPidfd: Int32 = baton_pidfd_open(getpid())
    var configuration: MasterConfiguration { master.configuration }
    var logger: Logger { master.logger }

    init(master: BatonMaster, listeners: ListenerSet, sockets: (notify: MasterRecord.Socket, control: MasterRecord.Socket?),
         spawner: Spawner, launcher: LaunchThread, systemd: SystemdNotifier, image: MasterImage, record: MasterRecord?,
         keeper: DescriptorKeeper? = nil, adoption: (from: Int32, lostGenerations: [Int])? = nil) throws {
        self.keeper = keeper
        self.adoption = adoption
        self.master = master
        self.listeners = listeners
        self.sockets = sockets
        self.spawner = spawner
        self.launcher = launcher
        self.systemd = systemd
        self.image = image
        let settings = MasterStateMachine.Settings(master.configuration, listenersFromSystemd: listeners.adopted)
        if let record {
            let (adopted, channels) = try record.adopted(listeners: listeners)
            machine = MasterStateMachine(settings: settings, masterPath: image.path, adopting: adopted)
            self.channels = channels
            if let totals = record.metrics { master.metrics.resume(from: totals) }
        } else {
            machine = MasterStateMachine(settings: settings, masterPath: image.path)
        }
        self.adopted = record?.writtenBy
        self.configStamp = record?.watchConf
        master.publish(MasterSnapshot(machine, image: image))
    }

    /// Starts generation 1 (or takes over what a previous image handed over) and handles events
    /// until shutdown has drained every generation. Throws when the first generation cannot
    /// start: there is nothing to keep serving.
    func run(events: AsyncStream<BatonMaster.Event>) async throws {
        defer {
            for timer in timers.values { timer.cancel() }
            // Nobody may wait forever on a master that is gone (a control client would hang).
            for reply in waiting.values { reply(.upgrade(.failed(reason: "the master stopped"))) }
            waiting = [:]
        }
        if let adoption {
            await feed(.adopt(lost: watchAdopted(), lostGenerations: adoption.lostGenerations, from: adoption.from))
            reportStrays()
            await upgradeIfDeployedMeanwhile()
        } else if let record = adopted {
            let described = "pid \(getpid()), \(image.path) (Baton \(Baton.version), execution \(image.executions), record from Baton \(record))"
            await feed(.resume(lost: watchAdopted(), execution: image.executions, image: described))
        } else {
            await feed(.start)
        }
        // (An adopted stop may have nothing left to wait for.)
        if !machine.firstGenerationFailed, !machine.isFinished {
            for await event in events {
                switch event {
                case .trigger(let reason, let reply, let canary):
                    if let canary {
                        await feed(.canaryTrigger(reason: reason, request: canary, reply: token(for: reply), masterBinaryChanged: image.changedOnDisk))
                    } else {
                        await feed(.trigger(reason: reason, reply: token(for: reply), masterBinaryChanged: image.changedOnDisk))
                    }
                case .endCanary(let promote, let reply):
                    await feed(.endCanary(promote: promote, reply: token(for: reply)))
                case .reexec(let reason, let reply):
                    await feed(.reexecRequested(reason: reason, reply: token(for: reply)))
                case .machine(let event):
                    if case .timeout(let timer) = event { timers[timer] = nil }
                    await feed(event)
                }
                if machine.isFinished || machine.firstGenerationFailed { break }
            }
        }
        if machine.firstGenerationFailed { throw MasterError.firstGenerationFailed }
        logger.info("master stopped: every generation has exited")
    }

    /// A deploy made while no master ran (watch.conf changed: inotify had no one to tell) is
    /// not lost: the adopting master upgrades when the file is no longer what its predecessor
    /// last read. An unchanged file (most adoptions) changes nothing.
    private func upgradeIfDeployedMeanwhile() async {
        guard let path = configuration.watchFile, let before = configStamp, let now = ConfigStamp(path: path), now != before else { return }
        logger.notice("\(path) changed while no master watched it (\(before) → \(now)): upgrading")
        await feed(.trigger(reason: "\(path) changed while no master ran", reply: nil, masterBinaryChanged: image.changedOnDisk))
    }

    /// Under systemd: what the unit's cgroup holds that the adopted record does not account for.
    private func reportStrays() {
        // The dead master too: a keeper that starts this master at once (--respawn-master) may
        // find it still in its exit, listed while its last threads end.
        let known = Set([getpid()] + (keeper.map { [$0.pid] } ?? []) + machine.generations.map(\.pid) + (adoption.map { [$0.from] } ?? []))
        let strays: [CgroupReconciliation.Stray]
        do {
            guard let found = try CgroupReconciliation.strays(known: known) else { return }
            strays = found
        } catch {
            logger.warning("cannot check the unit's cgroup for processes the dead master's record does not name: \(error)")
            return
        }
        if strays.isEmpty {
            logger.info("the unit's cgroup holds only this master, its keeper and the adopted workers")
        }
        for stray in strays {
            logger.warning("the unit's cgroup holds \(stray), which the dead master's record does not name; left alone (a worker it started just before dying drains by itself)")
        }
    }

    private func token(for reply: Reply?) -> MasterStateMachine.ReplyToken? {
        guard let reply else { return nil }
        nextToken += 1
        waiting[nextToken] = reply
        return .init(id: nextToken)
    }

    /// Hands `event` to the machine, then the results of its actions, until none is left.
    private func feed(_ event: MasterStateMachine.Event) async {
        var pending = [event]
        while !pending.isEmpty {
            for action in machine.handle(pending.removeFirst(), at: .now) {
                if let result = await perform(action) { pending.append(result) }
            }
        }
        keepDescriptors()
        master.publish(MasterSnapshot(machine, image: image))
    }

    /// Waits for the keeper to have closed its copies of listeners the master just closed: the
    /// drain orders that follow may tell a worker it is a socket's last user, to take its queue,
    /// and a copy still open would queue connections nobody accepts (reset, not refused).
    private func confirmKeeperLetGo(of names: [String]) {
        guard let keeper, !keeper.flush() else { return }
        logger.warning("the keeper (pid \(keeper.pid)) did not confirm that it let go of \(names.joined(separator: ", ")) (gone, or busy for over 1 s): connections may be reset there instead of refused")
    }

    /// Gives the keeper what it lacks, takes back what is closed, and hands it the record.
    private func keepDescriptors() {
        guard let keeper else { return }
        if !keeper.isAlive {
            logger.error("the keeper (pid \(keeper.pid)) is gone: starting another; until it runs, a master crash would lose the workers")
            do { try keeper.restart() } catch { logger.error("no keeper: \(error)") }
        }
        var pidfds: [Int32: pid_t] = [:]
        for generation in machine.generations {
            if let pidfd = channels[generation.number]?.pidfd, pidfd >= 0 { pidfds[pidfd] = generation.pid }
        }
        let plain = listeners.bound.map(\.listener.fd) + [sockets.notify.fd] + (sockets.control.map { [$0.fd] } ?? [])
            + channels.values.flatMap { [$0.control, $0.inbox] }.filter { $0 >= 0 }
        keeper.sync(plain: Set(plain), pidfds: pidfds)
        do { try keeper.keep(record()) } catch { logger.error("\(error)") }
    }

    private func spawn(_ number: Int, _ plan: LaunchPlan, canary: Bool) async -> MasterStateMachine.Event {
        do {
            let given = try listeners.listeners(for: plan.listen)
            let (pid, worker) = try await spawner.spawnWorker(
                plan, generation: number, listeners: given, notifySocketPath: sockets.notify.path, canary: canary,
                successorTimeout: keeper?.successorTimeout, watcher: watcher
            ) { [master] pid, status in master.post(.machine(.exited(pid: pid, status))) }
            channels[number] = worker
            keepDescriptors()
            return .spawned(generation: number, pid: pid, listeners: given, hasInbox: true)
        } catch {
            return .spawnFailed(generation: number, reason: "\(error)")
        }
    }

    /// Does what `action` says; returns the event that reports its result, if it has one.
    private func perform(_ action: MasterStateMachine.Action) async -> MasterStateMachine.Event? {
        switch action {
        case .launch:
            // Stamped before reading: a change made during the read shows as a change later.
            if let path = configuration.watchFile { configStamp = ConfigStamp(path: path) }
            do { return .launched(try await launcher.run(configuration.launch)) } catch { return .launchFailed("\(error)") }
        case .absorbPendingConfigChanges(let reason):
            if let path = master.configIsBeingRead() {
                logger.info("the pending change of \(path) is part of this upgrade (\(reason)); it will not trigger another")
            }
        case .spawn(let number, let plan):
            return await spawn(number, plan, canary: false)
        case .spawnCanary(let number, let plan):
            return await spawn(number, plan, canary: true)
        case .sendShare(let number, let percent, let to):
            guard let control = channels[number]?.control else { break }
            let inbox = to.flatMap { channels[$0]?.inbox }.flatMap { $0 >= 0 ? $0 : nil }
            if percent > 0 && inbox == nil {
                logger.error("canary: generation \(to.map(String.init) ?? "-")'s inbox is closed; generation \(number) passes it nothing")
            } else if !WorkerControl.send(.share(percent: inbox == nil ? 0 : percent, inbox: inbox), on: control) {
                logger.error("canary: generation \(number) did not take its share order (gone or not reading)")
            }
        case .sendAccept(let number):
            if let control = channels[number]?.control, !WorkerControl.send(.accept, on: control) {
                logger.error("canary: generation \(number) did not take its order to accept (gone or not reading)")
            }
        case .sendResume(let number):
            if let control = channels[number]?.control, !WorkerControl.send(.resume, on: control) {
                logger.error("generation \(number) did not take its order to serve again (gone or not reading)")
            }
        case .sendHurry(let number):
            if let control = channels[number]?.control, !WorkerControl.send(.hurry, on: control) {
                logger.debug("generation \(number) did not take its order to hurry (gone, not reading, or an older release): it drains at its own pace")
            }
        case .announceMaster(let number):
            if let control = channels[number]?.control, ownPidfd < 0 || !WorkerControl.send(.master(pid: getpid(), pidfd: ownPidfd), on: control) {
                logger.warning("generation \(number) did not take the news of its new master (gone, not reading, or an older release): it drains when its wait for a successor ends")
            }
        case .sendDrainOrders(let number, let shared, let handoffTo, let deadline):
            guard let control = channels[number]?.control else { break }
            let inbox = handoffTo.flatMap { channels[$0]?.inbox }.flatMap { $0 >= 0 ? $0 : nil }
            if !WorkerControl.send(DrainOrders(sharedListeners: shared, connectionInbox: inbox, deadline: deadline), on: control) {
                logger.debug("generation \(number) did not take its drain orders (gone or not reading): it drains without them")
            }
        case .signal(let pid, let signal):
            kill(pid, signal == .terminate ? SIGTERM : SIGKILL)
        case .startTimer(let timer, let delay):
            timers[timer]?.cancel()
            timers[timer] = Task { [master] in
                guard (try? await Task.sleep(for: delay)) != nil else { return }
                master.post(.machine(.timeout(timer)))
            }
        case .closeInbox(let number):
            // The keeper lets go first: a descriptor number closed here may be reused at once.
            if let inbox = channels[number]?.inbox, inbox >= 0 { keeper?.remove(inbox) }
            channels[number]?.closeInbox()
        case .forget(let number):
            for fd in channels[number]?.descriptors ?? [] { keeper?.remove(fd) }
            channels.removeValue(forKey: number)?.close()
        case .makeListenersCurrent(let given):
            if let change = listeners.makeCurrent(given) { logger.notice("\(change)") }
        case .closeUnusedListeners(let inUse):
            let before = Set(listeners.bound.map(\.listener.fd))
            let closed = listeners.closeUnused(inUse: inUse)
            for fd in before.subtracting(listeners.bound.map(\.listener.fd)) { keeper?.remove(fd) }
            guard !closed.isEmpty else { break }
            confirmKeeperLetGo(of: closed)
            logger.notice("closed listener(s) no generation uses any more: \(closed.joined(separator: ", "))")
        case .closeListeners:
            let closed = listeners.closeAll()
            for listener in closed { keeper?.remove(listener.fd) }
            guard !closed.isEmpty else { break }
            let names = closed.map(\.name)
            confirmKeeperLetGo(of: names)
            logger.notice("stopping: closed listener(s) \(names.joined(separator: ", ")); new clients are refused, the generations serve what is queued")
        case .reply(let token, let reply):
            waiting.removeValue(forKey: token.id)?(reply)
        case .tellSystemd(let state):
            systemd.tell(state)
        case .count(let metric):
            master.metrics.count(metric)
        case .log(let level, let message):
            logger.log(level: level, "\(message)")
        case .checkMasterImage:
            return await checkImage()
        case .execMaster:
            return await execImage()
        case .releasesInUse(let executables):
            configuration.onReleasesInUse?(executables)
        }
        return nil
    }
}
