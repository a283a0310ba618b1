#if canImport(Glibc)
import Glibc
#endif

/// What the master says to whoever asked for a re-execution (before the exec: nothing can be
/// said through it).
enum ReexecAnswer: Sendable, Equatable {
    /// The check passed; the exec follows.
    case accepted(String)
    /// Nothing changed, for this reason.
    case refused(String)
}

// Master re-execution, the I/O half (the decisions are ``MasterStateMachine``'s): the running
// image checks the new binary with the record it would hand over, then execs it in place (same
// pid); the new image adopts the record.
extension MasterLoop {
    /// Runs the master's binary in check mode with the record an exec would hand it.
    func checkImage() async -> MasterStateMachine.Event {
        do {
            let answer = try await MasterCheck.run(image, record: makeRecord())
            return .reexecChecked(.passed("\(image.path) passed the check (Baton \(answer.batonVersion), record version \(answer.recordVersion)); master pid \(getpid()) re-executes it now, then upgrades the workers"))
        } catch {
            return .reexecChecked(.refused("\(error)"))
        }
    }

    /// Execs the checked binary in place; returns only when the exec failed.
    func execImage() async -> MasterStateMachine.Event {
        let record = makeRecord()
        do {
            let memfd = try record.writeToMemfd()
            defer { close(memfd) }
            var environment = ProcessEnvironment.current().filter {
                !$0.key.hasPrefix("LISTEN_") && $0.key != MasterRecord.environmentKey && $0.key != MasterCheck.environmentKey
            }
            environment[MasterRecord.environmentKey] = String(memfd)
            if let socket = systemd.socket { environment["NOTIFY_SOCKET"] = socket }
            let keep = listeners.bound.map(\.listener.fd) + [sockets.notify.fd] + (sockets.control.map { [$0.fd] } ?? [])
                + channels.values.flatMap { [$0.control, $0.inbox] }.filter { $0 >= 0 } + [memfd]
            logger.notice("re-executing the master in place: \(image.path) (execution \(record.image.executions), \(record.generations.count) generation(s) handed over)")
            let code = await spawner.execInPlace(path: image.path, argv: image.arguments, environment: environment, keep: keep)
            return .execFailed("execve \(image.path): \(String(cString: strerror(code)))")
        } catch {
            return .execFailed("\(error)")
        }
    }

    /// The state the next image takes over.
    func makeRecord() -> MasterRecord {
        let now = ContinuousClock.now
        func age(_ instant: ContinuousClock.Instant) -> Int64 { MasterRecord.age(instant, now: now) }
        var record = MasterRecord(
            writtenAt: MasterRecord.bootTime(),
            image: .init(path: image.path, arguments: image.arguments, executions: image.executions + 1,
                         processAge: age(master.processStartedAt)),
            listeners: listeners.bound.map { .init(fd: $0.listener.fd, name: $0.listener.name, address: $0.address?.description) },
            currentListeners: listeners.current.map(\.fd),
            notify: sockets.notify, control: sockets.control,
            generations: machine.generations.compactMap { generation in
                guard let channels = channels[generation.number] else { return nil }
                return .init(number: generation.number, pid: generation.pid, version: generation.version, state: generation.state.rawValue,
                             age: age(generation.startedAt), readyAge: generation.readyAt.map(age), drainAge: generation.drainStartedAt.map(age),
                             status: generation.status, plan: .init(generation.plan), listeners: generation.listeners.map(\.fd),
                             control: channels.control, inbox: channels.inbox >= 0 ? channels.inbox : nil,
                             takesConnections: generation.takesConnections)
            },
            nextNumber: machine.nextNumber, currentPlan: machine.currentPlan.map(MasterRecord.Plan.init),
            previousPlan: machine.previousPlan.map(MasterRecord.Plan.init), consecutiveFailures: machine.consecutiveFailures,
            lastUpgrade: machine.lastUpgrade.map(MasterRecord.Outcome.init))
        record.reexecFailures = machine.reexecFailures
        record.lastReexec = machine.lastReexec
        record.metrics = master.metrics.totals
        return record
    }

    /// The generation table and channels of `record`, for a machine that continues from it.
    static func adopt(_ record: MasterRecord, listeners: ListenerSet) throws -> (MasterStateMachine.Adopted, [Int: WorkerChannels]) {
        func listener(_ fd: Int32) throws -> Listener {
            guard let found = listeners.bound.first(where: { $0.listener.fd == fd }) else {
                throw BatonError.masterHandover("a generation uses fd \(fd), which is not a listener of the record")
            }
            return found.listener
        }
        var channels: [Int: WorkerChannels] = [:]
        let generations = try record.generations.map { entry in
            guard let state = Generation.State(rawValue: entry.state) else {
                throw BatonError.masterHandover("unknown generation state '\(entry.state)'")
            }
            var generation = Generation(
                number: entry.number, pid: entry.pid, version: entry.version, state: state,
                startedAt: record.instant(age: entry.age), plan: try entry.plan.launchPlan(),
                listeners: try entry.listeners.map(listener), hasInbox: entry.inbox != nil,
                takesConnections: entry.takesConnections ?? false)
            generation.readyAt = entry.readyAge.map(record.instant)
            generation.drainStartedAt = entry.drainAge.map(record.instant)
            generation.status = entry.status
            channels[entry.number] = WorkerChannels(control: entry.control, inbox: entry.inbox ?? -1)
            return generation
        }
        let adopted = MasterStateMachine.Adopted(
            generations: generations, nextNumber: record.nextNumber, currentPlan: try record.currentPlan?.launchPlan(),
            previousPlan: try record.previousPlan?.launchPlan(), consecutiveFailures: record.consecutiveFailures,
            lastUpgrade: record.lastUpgrade?.outcome, reexecFailures: record.reexecFailures ?? 0)
        return (adopted, channels)
    }

    /// Watches every adopted generation's pid; returns those that cannot be watched.
    func watchAdopted() -> [Int32] {
        machine.generations.compactMap { generation in
            do {
                // A child that exited during the exec is a zombie now: its pidfd is readable at once.
                try watcher.watch(generation.pid) { [master] pid, status in master.post(.machine(.exited(pid: pid, status))) }
                return nil
            } catch {
                logger.error("\(generation.label) cannot be watched after the re-execution: \(error)")
                return generation.pid
            }
        }
    }
}
