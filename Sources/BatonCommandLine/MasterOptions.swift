import ArgumentParser
import Baton

/// The master's options, the same in every Baton command line (`hello`, `vapor-hello`,
/// `baton run`): each includes them with `@OptionGroup var master: MasterOptions`.
///
/// In a target of its own so that `Baton` does not depend on ArgumentParser.
public struct MasterOptions: ParsableArguments {
    @Option(help: "Seconds a new generation may take to become ready.")
    public var readyTimeout: Double = 30

    @Option(help: "Seconds an old generation may take to drain before SIGKILL.")
    public var drainTimeout: Double = 30

    @Option(help: "At most this many old generations draining at once; beyond it the oldest closes its WebSockets sooner (within a fifth of their close window).")
    public var maxDraining: Int = 2

    @Option(help: "Seconds after taking over within which a crash rolls back to the previous release.")
    public var probation: Double = 10

    @Option(help: "Seconds the workers keep serving after the master died, for the same command started again to adopt them (0: they drain at once).")
    public var successorTimeout: Double = 30

    @Flag(help: "When the master dies outright, its keeper starts this same command again at once, which adopts the workers: no supervisor needed, and a systemd unit with ExitType=cgroup stays active.")
    public var respawnMaster = false

    @Option(help: ArgumentHelp("Serve the master's metrics over HTTP at ADDR/metrics (e.g. 127.0.0.1:9464); never an app port.", valueName: "addr"))
    public var metricsListen: String?

    @Flag(help: "When an upgrade finds the master's own binary changed on disk, re-execute the master too (default: only on SIGUSR2 or `baton reload --master`).")
    public var reexecMasterOnUpgrade = false

    @Flag(help: "Accept a binary or watch.conf writable by group/others or owned by another user (not recommended).")
    public var allowInsecurePermissions = false

    public init() {}

    /// The seed workflow for the watch.conf at `configPath` (see ``WatchConfigDeployment``), with
    /// these options' permission check.
    public func deployment(configPath: String, arguments: [String], portOverride: Int? = nil) throws -> WatchConfigDeployment {
        try WatchConfigDeployment(configPath: configPath, arguments: arguments, portOverride: portOverride,
                                  allowInsecurePermissions: allowInsecurePermissions)
    }

    /// Sets the timeouts, the probation, the metrics address and the master's re-execution.
    public func apply(to configuration: inout MasterConfiguration) throws {
        configuration.readyTimeout = .seconds(readyTimeout)
        configuration.drainTimeout = .seconds(drainTimeout)
        guard (1...100).contains(maxDraining) else { throw ValidationError("--max-draining must be between 1 and 100 (got \(maxDraining))") }
        configuration.maxDrainingGenerations = maxDraining
        configuration.probation = .seconds(probation)
        guard successorTimeout >= 0, successorTimeout <= 3600 else {
            throw ValidationError("--successor-timeout must be between 0 and 3600 seconds (got \(successorTimeout))")
        }
        configuration.successorTimeout = .milliseconds(Int64(successorTimeout * 1000))
        guard !respawnMaster || successorTimeout > 0 else {
            throw ValidationError("--respawn-master needs a keeper: a --successor-timeout above 0")
        }
        configuration.respawnMaster = respawnMaster
        configuration.reexecMasterOnUpgrade = reexecMasterOnUpgrade
        configuration.metricsListen = try metricsListen.map { try ListenAddress(parsing: $0) }
    }
}
