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
/// Why not `PR_SET_PDEATHSIG`: that signal fires when the *thread* that spawned the worker exits,
/// and a master that re-executes itself in place (same pid, new image) loses every thread but
/// the one calling `execve`: each worker would be told to drain although its master lives on. A
/// pidfd follows the process, across `execve`, and fires only when it really exits.
package enum MasterWatch {
    private static let source = NIOLockedValueBox<(any DispatchSourceRead)?>(nil)
    private static let exitAction = NIOLockedValueBox<@Sendable () -> Void>({ kill(getpid(), SIGTERM) })

    /// Replaces what happens when the master exits (by default, SIGTERM to this process).
    package static func onExit(_ action: @escaping @Sendable () -> Void) {
        exitAction.withLockedValue { $0 = action }
    }

    /// Starts watching `masterPID`, which must be this process's parent (checked after the pidfd
    /// is open, so the pidfd cannot name a recycled pid). Throws when the master has already gone.
    static func start(masterPID: pid_t) throws {
        let pidfd = baton_pidfd_open(masterPID)
        guard pidfd >= 0, getppid() == masterPID else {
            if pidfd >= 0 { close(pidfd) }
            throw BatonError.invalidEnvironment("the master (pid \(masterPID)) exited before this worker started")
        }
        let watch = DispatchSource.makeReadSource(fileDescriptor: pidfd, queue: DispatchQueue(label: "baton.master-watch"))
        watch.setEventHandler { [watch] in
            watch.cancel()
            exitAction.withLockedValue { $0 }()
        }
        watch.setCancelHandler { close(pidfd) }
        source.withLockedValue { previous in
            previous?.cancel()
            previous = watch
        }
        watch.resume()
    }
}
