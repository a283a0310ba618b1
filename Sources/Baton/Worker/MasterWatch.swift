#if canImport(Glibc)
import Glibc
#endif
import CBaton
@preconcurrency import Dispatch
import NIOConcurrencyHelpers

/// Drains a worker whose master has died: a pidfd on the master becomes readable when it exits,
/// and the worker then sends itself SIGTERM, the ordinary drain (or does what ``onExit`` says
/// instead: a worker whose drain was called off has had its SIGTERM already).
///
/// A worker that follows its control channel and was given a successor timeout (protocol 6,
/// ``outliveMaster(for:onOrphaned:)``) keeps serving instead, for that long: the master's keeper
/// holds everything a successor needs, and a new master that adopts this worker says so on the
/// control channel (``follow(pid:pidfd:)``). No successor in time, or the channel closed (the
/// keeper is gone too): the drain, as above.
///
/// Why not `PR_SET_PDEATHSIG`: that signal fires when the *thread* that spawned the worker exits,
/// and a master that re-executes itself in place (same pid, new image) loses every thread but
/// the one calling `execve`: each worker would be told to drain although its master lives on. A
/// pidfd follows the process, across `execve`, and fires only when it really exits.
package enum MasterWatch {
    private struct State {
        var source: (any DispatchSourceRead)?
        var exitAction: @Sendable () -> Void = { kill(getpid(), SIGTERM) }
        /// How long to wait for a successor, and what to say when the wait starts.
        var outlive: (timeout: Duration, onOrphaned: @Sendable (Duration) -> Void)?
        /// The wait for a successor under way.
        var orphanTimer: (any DispatchSourceTimer)?
        /// Counts the waits started, so that a wait's expiry is not taken for a later one's.
        var waits = 0
    }

    private static let state = NIOLockedValueBox(State())
    private static let queue = DispatchQueue(label: "baton.master-watch")

    /// Replaces what happens when the master exits (by default, SIGTERM to this process).
    package static func onExit(_ action: @escaping @Sendable () -> Void) {
        state.withLockedValue { $0.exitAction = action }
    }

    /// From now on, a master's death starts a wait of `timeout` for a successor instead of the
    /// drain; `onOrphaned` runs when it starts (to log it).
    package static func outliveMaster(for timeout: Duration, onOrphaned: @escaping @Sendable (Duration) -> Void) {
        state.withLockedValue { $0.outlive = (timeout, onOrphaned) }
    }

    /// Starts watching `masterPID`, which must be this process's parent (checked after the pidfd
    /// is open, so the pidfd cannot name a recycled pid). Throws when the master has already gone.
    static func start(masterPID: pid_t) throws {
        let pidfd = baton_pidfd_open(masterPID)
        guard pidfd >= 0, getppid() == masterPID else {
            if pidfd >= 0 { close(pidfd) }
            throw BatonError.invalidEnvironment("the master (pid \(masterPID)) exited before this worker started")
        }
        watch(pidfd)
    }

    /// A master adopted this worker: watch it (`pidfd`) instead, and stop waiting.
    package static func follow(pid: pid_t, pidfd: Int32) {
        state.withLockedValue { state in
            state.orphanTimer?.cancel()
            state.orphanTimer = nil
            state.waits += 1
        }
        watch(pidfd)
    }

    /// The control channel closed: the master's keeper is gone too, so no successor can come.
    package static func controlChannelClosed() {
        let waiting = state.withLockedValue { state -> Bool in
            guard let timer = state.orphanTimer else { return false }
            timer.cancel()
            state.orphanTimer = nil
            return true
        }
        if waiting { masterGoneForGood() }
    }

    private static func watch(_ pidfd: Int32) {
        let watch = DispatchSource.makeReadSource(fileDescriptor: pidfd, queue: queue)
        watch.setEventHandler { [watch] in
            watch.cancel()
            masterExited()
        }
        watch.setCancelHandler { close(pidfd) }
        state.withLockedValue { state in
            state.source?.cancel()
            state.source = watch
        }
        watch.resume()
    }

    private static func masterExited() {
        let outlive = state.withLockedValue { state -> (timeout: Duration, onOrphaned: @Sendable (Duration) -> Void)? in
            guard let outlive = state.outlive, outlive.timeout > .zero else { return nil }
            state.waits += 1
            let wait = state.waits
            let timer = DispatchSource.makeTimerSource(queue: queue)
            timer.setEventHandler { [timer] in
                timer.cancel()
                let expired = self.state.withLockedValue { state -> Bool in
                    guard state.waits == wait, state.orphanTimer != nil else { return false }
                    state.orphanTimer = nil
                    return true
                }
                if expired { masterGoneForGood() }
            }
            timer.schedule(deadline: .now() + .nanoseconds(Int(clamping: outlive.timeout.nanoseconds)))
            state.orphanTimer = timer
            timer.resume()
            return outlive
        }
        if let outlive { outlive.onOrphaned(outlive.timeout) } else { masterGoneForGood() }
    }

    private static func masterGoneForGood() {
        state.withLockedValue { $0.exitAction }()
    }
}
