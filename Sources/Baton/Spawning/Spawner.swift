#if canImport(Glibc)
import Glibc
#endif
import CBaton
import NIOPosix

/// Starts worker processes directly: `baton_spawn` (CBaton) clones the calling thread with
/// CLONE_VM|CLONE_VFORK as posix_spawn does, and execs the worker itself, no shell in between and
/// no fork of the Swift runtime.
///
/// The child gets the listeners at fd 3, 4, …, no other descriptor, an empty signal mask, default
/// signal dispositions, and `LISTEN_PID` equal to its own pid (which only the child can know:
/// the C helper writes it into a pre-built environment before execve). A failing execve (say a
/// script whose interpreter is missing) is an error of `spawn`, not an exit status of the worker.
///
/// Every spawn runs on one dedicated thread that lives as long as the spawner: a worker of an
/// older release (protocol 1) may use the parent-death signal (`PR_SET_PDEATHSIG`), which fires
/// when the *thread* that spawned it exits, so spawning from a pooled thread that later retires
/// would kill a healthy worker. (Workers of this release watch the master process instead.)
final class Spawner: Sendable {
    /// Also the thread a master re-execution runs `execve` on (see `execInPlace`).
    let thread: NIOThreadPool

    init() {
        self.thread = NIOThreadPool(numberOfThreads: 1)
        self.thread.start()
    }

    func shutdown() async {
        try? await thread.shutdownGracefully()
    }

    /// Checks that `path` is a regular, executable file, so that a directory is reported as such
    /// (execve would say "Permission denied").
    static func checkExecutable(_ path: String) throws {
        var info = stat()
        guard stat(path, &info) == 0 else { throw BatonError.spawnFailed(path, errno) }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw BatonError.spawnFailed(path, EISDIR) }
        guard access(path, X_OK) == 0 else { throw BatonError.spawnFailed(path, errno) }
    }

    /// Spawns `plan.executable` with `environment` and `descriptors` at fd 3, 4, … (a worker's
    /// come in ``WorkerDescriptors`` order); returns the child's pid.
    func spawn(_ plan: LaunchPlan, environment: [String: String], descriptors: [Int32]) async throws -> pid_t {
        try Self.checkExecutable(plan.executable)
        let argv = [plan.executable] + plan.arguments
        let envp = environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        return try await thread.runIfActive {
            try Self.spawnNow(path: plan.executable, argv: argv, envp: envp, fds: descriptors, setListenPID: true)
        }
    }

    /// Spawns `plan.executable` with `listeners` at fd 3, 4, … and nothing else.
    func spawn(_ plan: LaunchPlan, environment: [String: String], listeners: [Listener]) async throws -> pid_t {
        try await spawn(plan, environment: environment, descriptors: listeners.map(\.fd))
    }

    /// The synchronous spawn on the calling thread. Exposed for tests.
    static func spawnNow(path: String, argv: [String], envp: [String], fds: [Int32], setListenPID: Bool) throws -> pid_t {
        var pid: pid_t = 0
        let rc = withCStringArray(argv) { cArgv in
            withCStringArray(envp) { cEnvp in
                baton_spawn(path, cArgv, cEnvp, fds, Int32(fds.count), setListenPID ? 1 : 0, &pid)
            }
        }
        guard rc == 0 else { throw BatonError.spawnFailed(path, rc) }
        return pid
    }
}

/// Calls `body` with a NULL-terminated `char *[]` holding copies of `strings`.
func withCStringArray<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    let pointers = strings.map { strdup($0) } + [nil]
    defer { for pointer in pointers { free(pointer) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}
