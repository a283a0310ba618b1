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
            let answer = try await MasterCheck.run(image, record: record())
            return .reexecChecked(.passed("\(image.path) passed the check (Baton \(answer.batonVersion), record version \(answer.recordVersion)); master pid \(getpid()) re-executes it now, then upgrades the workers"))
        } catch {
            return .reexecChecked(.refused("\(error)"))
        }
    }

    /// The state the next image takes over.
    func record() -> MasterRecord {
        var record = MasterRecord(machine, channels: channels, listeners: listeners, sockets: sockets, image: image,
                                  processStartedAt: master.processStartedAt, metrics: master.metrics.totals)
        if let keeper {
            record.keeper = .init(link: keeper.link, pid: keeper.pid, adoptPath: keeper.adoptPath,
                                  successorTimeoutMilliseconds: keeper.successorTimeout.milliseconds,
                                  names: Dictionary(keeper.names.map { ($0.value, $0.key) }, uniquingKeysWith: { first, _ in first }))
        }
        record.watchConf = configStamp
        return record
    }

    /// Execs the checked binary in place; returns only when the exec failed.
    func execImage() async -> MasterStateMachine.Event {
        let record = record()
        do {
            let memfd = try record.writeToMemfd()
            defer { close(memfd) }
            var environment = MasterImage.environmentForNextStart(notifySocket: systemd.socket)
            environment[MasterRecord.environmentKey] = String(memfd)
            let keep = listeners.bound.map(\.listener.fd) + [sockets.notify.fd] + (sockets.control.map { [$0.fd] } ?? [])
                + channels.values.flatMap(\.descriptors) + [memfd] + (keeper.map { [$0.link] } ?? [])
            logger.notice("re-executing the master in place: \(image.path) (execution \(record.image.executions), \(record.generations.count) generation(s) handed over)")
            let code = await spawner.execInPlace(path: image.path, argv: image.arguments, environment: environment, keep: keep)
            return .execFailed("execve \(image.path): \(String(cString: strerror(code)))")
        } catch {
            return .execFailed("\(error)")
        }
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
