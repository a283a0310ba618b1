import CBaton
import NIOPosix

/// Runs ``MasterConfiguration/launch`` (what to start next: watch.conf read again, the binary
/// checked, hashed and staged) on a thread of its own, at a lower CPU priority than the workers.
///
/// Staging reads and hashes the whole binary: about 80 ms of CPU for the 55 MB release build of
/// `hello` on this machine. The master often shares a core with the serving generation, and at
/// the same priority those 80 ms came out of the requests in flight: the p99 latency in the second
/// of an upgrade rose before the new generation had even started (issue 13). At
/// ``niceIncrement`` above the master's own nice value the thread runs when the core has time, and
/// a busy worker that wakes up takes the CPU back. On a saturated core it still gets a share
/// (roughly a tenth against one busy thread), so a deploy there is delayed, never starved.
///
/// Only this thread is lowered: a nice value on Linux belongs to a thread, and workers are
/// spawned from the ``Spawner``'s thread, so they start at the master's own priority.
final class LaunchThread: Sendable {
    /// How much the thread's nice value is raised above the master's (at most to 19).
    static let niceIncrement: Int32 = 10
    private let pool: NIOThreadPool

    init() {
        pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        // The pool's one thread runs its work in order: this comes before any launch. Raising
        // a nice value needs no privilege, so this fails only on a broken system; the launches
        // then run at normal priority, as they did before.
        pool.submit { _ in _ = baton_thread_lower_priority(Self.niceIncrement) }
    }

    /// Runs `body` on the thread and returns what it returns or throws.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await pool.runIfActive(body)
    }

    func shutdown() async {
        try? await pool.shutdownGracefully()
    }
}
