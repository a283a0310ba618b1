#if canImport(Glibc)
import Glibc
#endif
import Logging

/// What the master says to whoever asked for a re-execution (before the exec: nothing can be
/// said through it).
enum ReexecAnswer: Sendable {
    /// The check passed; the exec follows.
    case accepted(String)
    /// Nothing changed, for this reason.
    case refused(String)
}

/// The master's progress on upgrades and re-executions, for `status`.
struct MasterProgress: Sendable {
    var image: MasterImage
    var upgradeRunning: Bool
    var reexecFailures: Int
    var lastReexec: String?
}

// Master re-execution: the running image checks the new binary, writes the record and execs it
// in place (same pid); the new image adopts the record and upgrades the workers.
extension MasterLoop {
    typealias ReexecReply = @Sendable (ReexecAnswer) -> Void

    func publishProgress() {
        master.publish(MasterProgress(image: image, upgradeRunning: upgrade != nil || reexecPending,
                                      reexecFailures: reexecFailures, lastReexec: lastReexec))
    }

    /// Checks the binary at the image's path, then execs it (at once, or for a control request
    /// once the answer is delivered: `.execNow`).
    func requestReexec(reason: String, reply: ReexecReply?) async {
        let refusal: String? =
            shuttingDown ? "the master is shutting down"
            : reexecPending ? "a master re-execution is already under way"
            : upgrade.map { "an upgrade is running (generation \($0.generation) starting); try again once it has finished" }
        if let refusal {
            logger.error("master re-execution (\(reason)) refused: \(refusal)")
            reply?(.refused(refusal))
            return
        }
        logger.notice("master re-execution (\(reason)): checking \(image.path)")
        let answer: MasterCheck.Answer
        do {
            answer = try await MasterCheck.run(image, record: makeRecord())
        } catch {
            reexecFailures += 1
            master.metrics.reexecuted("refused")
            lastReexec = "refused (\(reason)): \(error)"
            logger.error("master re-execution refused, this image keeps running: \(error)")
            reply?(.refused("\(error)"))
            startFollowUp()
            return
        }
        reexecPending = true
        let message = "\(image.path) passed the check (Baton \(answer.batonVersion), record version \(answer.recordVersion)); master pid \(getpid()) re-executes it now, then upgrades the workers"
        logger.info("\(message)")
        if let reply {
            reply(.accepted(message))
            after(.seconds(2)) { .execNow }  // in case the answer is never delivered
        } else {
            await execNow()
        }
    }

    /// Execs the checked binary in place; returns only when the exec failed.
    func execNow() async {
        guard reexecPending else { return }
        if let waiting = followUp {
            followUp = nil
            for reply in waiting.replies {
                reply(.failed(reason: "superseded: the master re-executes itself now and then upgrades the workers (see `baton status`)"))
            }
        }
        let record = makeRecord()
        let failure: String
        do {
            let memfd = try record.writeToMemfd()
            var environment = ProcessEnvironment.current().filter {
                !$0.key.hasPrefix("LISTEN_") && $0.key != MasterRecord.environmentKey && $0.key != MasterCheck.environmentKey
            }
            environment[MasterRecord.environmentKey] = String(memfd)
            if let socket = systemd.socket { environment["NOTIFY_SOCKET"] = socket }
            let keep = listeners.bound.map(\.listener.fd) + [sockets.notify.fd] + (sockets.control.map { [$0.fd] } ?? [])
                + generations.flatMap { [$0.control, $0.inbox] }.filter { $0 >= 0 } + [memfd]
            systemd.reloading("re-executing the master: \(image.path)")
            logger.notice("re-executing the master in place: \(image.path) (execution \(record.image.executions), \(generations.count) generation(s) handed over)")
            let code = await spawner.execInPlace(path: image.path, argv: image.arguments, environment: environment, keep: keep)
            close(memfd)
            failure = "execve \(image.path): \(String(cString: strerror(code)))"
        } catch {
            failure = "\(error)"
        }
        reexecPending = false
        reexecFailures += 1
        master.metrics.reexecuted("failed")
        lastReexec = "failed: \(failure)"
        logger.error("master re-execution failed, this image keeps running: \(failure)")
        systemd.ready("master re-execution failed: \(failure)")
        startFollowUp()
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
            generations: generations.map {
                .init(number: $0.number, pid: $0.pid, version: $0.version, state: $0.state.rawValue, age: age($0.startedAt),
                      readyAge: $0.readyAt.map(age), drainAge: $0.drainStartedAt.map(age), status: $0.status,
                      plan: .init($0.plan), listeners: $0.listeners.map(\.fd), control: $0.control,
                      inbox: $0.inbox >= 0 ? $0.inbox : nil, takesConnections: $0.takesConnections)
            },
            nextNumber: nextNumber, currentPlan: currentPlan.map(MasterRecord.Plan.init),
            previousPlan: previousPlan.map(MasterRecord.Plan.init), consecutiveFailures: consecutiveFailures,
            lastUpgrade: master.lastUpgrade.map(MasterRecord.Outcome.init))
        record.reexecFailures = reexecFailures
        record.lastReexec = lastReexec
        record.metrics = master.metrics.totals
        return record
    }

    /// Takes over the generation table of `record` (before ``run(events:)``).
    func adopt(_ record: MasterRecord) throws {
        func listener(_ fd: Int32) throws -> Listener {
            guard let found = listeners.bound.first(where: { $0.listener.fd == fd }) else {
                throw BatonError.masterHandover("a generation uses fd \(fd), which is not a listener of the record")
            }
            return found.listener
        }
        generations = try record.generations.map { entry in
            guard let state = Generation.State(rawValue: entry.state) else {
                throw BatonError.masterHandover("unknown generation state '\(entry.state)'")
            }
            var generation = Generation(
                number: entry.number, pid: entry.pid, version: entry.version, state: state,
                startedAt: record.instant(age: entry.age), plan: try entry.plan.launchPlan(),
                listeners: try entry.listeners.map(listener), control: entry.control,
                inbox: entry.inbox ?? -1, takesConnections: entry.takesConnections ?? false)
            generation.readyAt = entry.readyAge.map(record.instant)
            generation.drainStartedAt = entry.drainAge.map(record.instant)
            generation.status = entry.status
            return generation
        }
        nextNumber = record.nextNumber
        currentPlan = try record.currentPlan?.launchPlan()
        previousPlan = try record.previousPlan?.launchPlan()
        consecutiveFailures = record.consecutiveFailures
        if let totals = record.metrics { master.metrics.resume(from: totals) }
        master.metrics.reexecuted("succeeded")
        reexecFailures = record.reexecFailures ?? 0
        lastReexec = "re-executed \(image.path) (execution \(image.executions))"
        if let outcome = record.lastUpgrade?.outcome { master.publish(outcome) }
        adopted = record
    }

    /// Manages the adopted generations as if this image had started them, then upgrades the
    /// workers so that they run the release this master now runs.
    func resume(from record: MasterRecord) async {
        logger.notice("master re-executed in place: pid \(getpid()), \(image.path) (Baton \(Baton.version), execution \(image.executions), record from Baton \(record.writtenBy)); took over \(generations.count) generation(s): \(generations.map { "\($0.number) \($0.state.rawValue)" }.joined(separator: ", "))")
        for generation in generations {
            do {
                // A child that exited during the exec is a zombie now: its pidfd is readable at once.
                try watcher.watch(generation.pid) { [master] pid, status in master.post(.exited(pid, status)) }
            } catch {
                logger.error("\(generation.label) cannot be watched after the re-execution (\(error)); forgetting it")
                generations.removeAll { $0.pid == generation.pid }
                close(generation.control)
                if generation.inbox >= 0 { close(generation.inbox) }
                continue
            }
            if generation.state == .draining, let started = generation.drainStartedAt {
                let left = max(.zero, configuration.drainTimeout - started.duration(to: .now))
                let number = generation.number
                after(left) { .drainTimeout(generation: number) }
            }
        }
        await start(.upgrade(reason: "master re-executed", announced: true), replies: [])
    }
}
