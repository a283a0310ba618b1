import Baton
#if canImport(Glibc)
import Glibc
#endif
import Logging

/// What an app that is its own master and worker (`hello`, `vapor-hello`) does at start, besides
/// serving: its logger, and its master's configuration from `--config`/`--port` and
/// ``MasterOptions``.
public enum EmbeddedApp {
    /// Runs the app named `label` in the role it was started in (``Baton/run(logger:master:worker:)``):
    /// a master configured from `config` (else `<label>.watch.conf` when it is in the working
    /// folder), `port`, `extraListen` (served beside the port) and `options`; or a worker, which
    /// `serve` serves. Logs as `label`.
    public static func run(label: String, config: String?, port: Int?, extraListen: [ListenAddress] = [], options: MasterOptions,
                           serve: (BatonWorker, Logger) async throws -> Void) async throws {
        let logger = logger(label: label)
        let master = {
            try masterConfiguration(configPath: configPath(config, default: "\(label).watch.conf"), port: port, extraListen: extraListen, options: options)
        }
        try await Baton.run(logger: logger, master: master) { worker in
            try await serve(worker, logger)
        }
    }

    /// Bootstraps Baton's logging; a logger labelled `label` with this process's role (master or
    /// worker) and pid.
    static func logger(label: String) -> Logger {
        let role = getenv(WorkerEnvironment.generation) == nil ? "master" : "worker"
        BatonLogging.bootstrap()
        var logger = Logger(label: label)
        logger[metadataKey: "role"] = "\(role)"
        logger[metadataKey: "pid"] = "\(getpid())"
        return logger
    }

    /// `given`, else `defaultFile` when it is in the working folder.
    static func configPath(_ given: String?, default defaultFile: String) -> String? {
        if let given { return given }
        return access(defaultFile, F_OK) == 0 ? defaultFile : nil
    }

    /// With a watch.conf: the seed workflow (BinName staged and started, upgrades when the file
    /// changes or on SIGHUP). Without: this executable, upgraded on SIGHUP from the same path, on
    /// `port` (default 8080). The workers get this process's arguments.
    static func masterConfiguration(configPath: String?, port: Int?, extraListen: [ListenAddress] = [], options: MasterOptions) throws -> MasterConfiguration {
        let arguments = Array(CommandLine.arguments.dropFirst())
        var configuration: MasterConfiguration
        if let configPath {
            var deployment = try options.deployment(configPath: configPath, arguments: arguments, portOverride: port)
            deployment.extraListen = extraListen
            configuration = try deployment.masterConfiguration()
        } else {
            let executable = try Baton.currentExecutablePath()
            configuration = MasterConfiguration(listen: [.tcp(host: "0.0.0.0", port: port ?? 8080)] + extraListen) {
                LaunchPlan(executable: executable, arguments: arguments, version: "1")
            }
        }
        try options.apply(to: &configuration)
        configuration.controlSocket = ControlProtocol.socketPath(configPath: configPath)
        return configuration
    }
}
