#if canImport(Glibc)
import Glibc
#endif

/// The command a keeper (``DescriptorKeeper``) runs when its master dies outright
/// (`--respawn-master`): the master's own command line, folder and environment, so that the new
/// master adopts the workers without a supervisor. Under a systemd unit with `ExitType=cgroup`
/// that new master then claims the unit (`MAINPID=`), and the unit stays active throughout.
struct MasterRespawn: Equatable {
    /// Set in the environment of a master its keeper started: it is not the process systemd
    /// started, so it says `MAINPID=` (the unit needs `NotifyAccess=all`).
    static let markerKey = "BATON_RESPAWNED"

    var path: String
    var folder: String
    var arguments: [String]
    var environment: [String: String]

    /// This master's command: `image`'s path and argv, the working folder, and the environment
    /// a next start gets (``MasterImage/environmentForNextStart(notifySocket:from:)``).
    static func of(_ image: MasterImage, notifySocket: String?,
                   environment: [String: String] = ProcessEnvironment.current()) -> MasterRespawn {
        var environment = MasterImage.environmentForNextStart(notifySocket: notifySocket, from: environment)
        environment[markerKey] = "1"
        let folder = ProcessEnvironment.workingDirectory() ?? "/"
        return MasterRespawn(path: image.path, folder: folder, arguments: image.arguments, environment: environment)
    }

    /// Whether this process was started by its keeper; the marker is taken out of the environment
    /// (no worker inherits it).
    static func takeMarker() -> Bool {
        defer { unsetenv(markerKey) }
        return getenv(markerKey) != nil
    }

    /// What keeper.c reads: `path\0folder\0argc\0argv…\0NAME=value…\0`.
    var encoded: [UInt8] {
        var bytes: [UInt8] = []
        let fields = [path, folder, String(arguments.count)] + arguments
            + environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        for field in fields {
            bytes += field.utf8
            bytes.append(0)
        }
        return bytes
    }
}
