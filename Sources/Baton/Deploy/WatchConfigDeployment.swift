#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The seed workflow as a ``MasterConfiguration``: the app folder holds `watch.conf` and the
/// binary it names; a change to the file (after `DelaySecond`) upgrades to the binary it names,
/// staged into the `ReleaseStore` first, as the version in `Ver`, on the port in `HttpPort`.
///
/// ```swift
/// let deployment = try WatchConfigDeployment(configPath: "/srv/app/watch.conf")
/// try await Baton.runMaster(try deployment.masterConfiguration(), logger: logger)
/// ```
public struct WatchConfigDeployment: Sendable {
    /// The watch.conf file.
    public let configPath: String
    /// Arguments for the worker (after argv[0]).
    public var arguments: [String]
    /// A port that wins over `HttpPort` (a command-line override).
    public var portOverride: Int?
    /// Addresses served beside `HttpPort` (an app's other listeners, e.g. an h2c port).
    public var extraListen: [ListenAddress] = []
    /// Where releases are staged.
    package var store: ReleaseStore

    /// The deployment described by the watch.conf at `configPath`; releases go beside it.
    public init(configPath: String, arguments: [String] = [], portOverride: Int? = nil, allowInsecurePermissions: Bool = false) throws {
        self.configPath = configPath
        self.arguments = arguments
        self.portOverride = portOverride
        self.store = try ReleaseStore(appFolder: PathName.folder(of: configPath))
        self.store.allowInsecurePermissions = allowInsecurePermissions
    }

    /// Reads watch.conf, refusing a file others could have written.
    public func load() throws -> WatchConfig {
        if !store.allowInsecurePermissions { try FileSafety.check(path: configPath, what: "watch.conf") }
        return try WatchConfig.load(path: configPath)
    }

    /// What to start now: watch.conf read again, its binary checked and staged.
    public func launchPlan() throws -> LaunchPlan {
        let config = try load()
        let release = try store.stage(binName: config.binName, version: config.version, expectedSHA256: config.sha256)
        return LaunchPlan(executable: release.path, arguments: arguments, version: config.version,
                          listen: [.tcp(host: "0.0.0.0", port: portOverride ?? config.httpPort)] + extraListen, canary: config.canary)
    }

    /// A master configuration for this deployment. watch.conf must be valid now: a master does
    /// not start on a broken config.
    public func masterConfiguration() throws -> MasterConfiguration {
        let initial = try load()
        var configuration = MasterConfiguration(listen: [.tcp(host: "0.0.0.0", port: portOverride ?? initial.httpPort)] + extraListen) {
            try launchPlan()
        }
        configuration.watchFile = configPath
        let lastDelay = initial.delaySeconds
        configuration.watchQuietPeriod = {
            // The new file's DelaySecond if it can be read yet, else the one we started with.
            let seconds = (try? WatchConfig.load(path: configPath).delaySeconds) ?? lastDelay
            return .milliseconds(Int64(seconds * 1000))
        }
        let store = self.store
        configuration.onReleasesInUse = { inUse in store.prune(inUse: inUse) }
        return configuration
    }
}
