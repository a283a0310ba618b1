#if canImport(Glibc)
import Glibc
#endif

/// The program image a master runs: where it was started from, so that a re-execution runs the
/// file now at that path (the app's binary in embedded mode, `baton` for `baton run`).
package struct MasterImage: Sendable, Equatable {
    /// The absolute path the master was started from (argv[0] resolved like a shell does: a
    /// relative path against the working folder, a bare name through `PATH`).
    package let path: String
    /// The full argv, argv[0] included, given again to the next image.
    package let arguments: [String]
    /// How many times this master process has executed a new image in place (0: never).
    package let executions: Int
    /// When the running image started (the process's own start, or its last re-execution).
    package let startedAt: ContinuousClock.Instant
    /// The file the running image was loaded from (device, inode), to tell whether the path
    /// names a different file now.
    let loadedFrom: FileIdentity?

    struct FileIdentity: Sendable, Equatable, Codable {
        var device: UInt64
        var inode: UInt64

        init?(path: String) {
            var info = stat()
            guard stat(path, &info) == 0 else { return nil }
            device = UInt64(info.st_dev)
            inode = UInt64(info.st_ino)
        }
    }

    /// The image of this process, as started: argv from the command line.
    static func current(executions: Int = 0, arguments: [String] = CommandLine.arguments, path: String? = nil) -> MasterImage {
        let path = path ?? ProcessEnvironment.executablePath(arguments.first ?? "") ?? ((try? Baton.currentExecutablePath()) ?? "")
        return MasterImage(path: path, arguments: arguments, executions: executions, startedAt: .now,
                           loadedFrom: FileIdentity(path: "/proc/self/exe"))
    }

    /// Whether the file at ``path`` is no longer the one this image was loaded from (a new
    /// binary was renamed over it).
    package var changedOnDisk: Bool {
        guard let loadedFrom, let now = FileIdentity(path: path) else { return false }
        return now != loadedFrom
    }

    /// The environment of this master's next start (a re-execution, or its keeper's respawn):
    /// this process's, without what belonged to this start only (socket activation's `LISTEN_*`,
    /// a re-execution's record and check, a respawn's marker), with systemd's `NOTIFY_SOCKET`
    /// (taken out at start) put back.
    static func environmentForNextStart(notifySocket: String?,
                                        from environment: [String: String] = ProcessEnvironment.current()) -> [String: String] {
        let startOnly: Set = [MasterRecord.environmentKey, MasterCheck.environmentKey, MasterRespawn.markerKey]
        var next = environment.filter { !$0.key.hasPrefix("LISTEN_") && !startOnly.contains($0.key) }
        if let notifySocket { next["NOTIFY_SOCKET"] = notifySocket }
        return next
    }
}
