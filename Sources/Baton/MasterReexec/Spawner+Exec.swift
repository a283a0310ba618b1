#if canImport(Glibc)
import Glibc
#endif
import CBaton

extension Spawner {
    /// Replaces this process's image with `path` (same pid), keeping `keep` open across the exec.
    /// Returns only when the exec failed: the errno value.
    ///
    /// It runs on the spawner's thread, the one that spawned every worker: `execve` ends every
    /// other thread, and a worker of an older release (protocol 1) that tied its life to its
    /// spawning thread (`PR_SET_PDEATHSIG`) would otherwise be told to drain.
    func execInPlace(path: String, argv: [String], environment: [String: String], keep: [Int32]) async -> Int32 {
        let envp = environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        let result = try? await thread.runIfActive { () -> Int32 in
            withCStringArray(argv) { cArgv in
                withCStringArray(envp) { cEnvp in
                    keep.withUnsafeBufferPointer { baton_reexec(path, cArgv, cEnvp, $0.baseAddress, Int32(keep.count)) }
                }
            }
        }
        return result ?? ECANCELED
    }
}
