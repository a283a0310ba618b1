import ArgumentParser
import Baton
import BatonHummingbird
#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Hummingbird
import Logging

/// The seed's demo server: `GET /hello` answers which version and which worker process served;
/// `GET /sleep?ms=N` does the same after N milliseconds (at most 60 s).
/// Started by hand it is the Baton master and runs itself as the worker; SIGHUP upgrades it to
/// the `hello` binary now on disk.
@main
struct Hello: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Baton's demo server: zero-downtime upgrades on SIGHUP.",
        discussion: """
            GET /hello answers {"message": …, "ver": …, "pid": …}. Send SIGHUP to the master to start \
            the hello binary now on disk as a new generation; the old one drains and exits.
            """)

    @Option(help: "watch.conf to read HttpPort and Ver from (default: ./hello.watch.conf when present).")
    var config: String?

    @Option(help: "Port to listen on (overrides HttpPort; default 8080).")
    var port: Int?

    @Option(help: "Seconds a new generation may take to become ready.")
    var readyTimeout: Double = 30

    @Option(help: "Seconds an old generation may take to drain before SIGKILL.")
    var drainTimeout: Double = 30

    @Option(help: "Seconds after taking over within which a crash rolls back to the previous release.")
    var probation: Double = 10

    @Option(help: ArgumentHelp("Serve the master's metrics over HTTP at ADDR/metrics (e.g. 127.0.0.1:9464); never an app port.", valueName: "addr"))
    var metricsListen: String?

    @Flag(help: "When an upgrade finds the master's own binary changed on disk, re-execute the master too (default: only on SIGUSR2 or `baton reload --master`).")
    var reexecMasterOnUpgrade = false

    @Flag(help: "Accept a binary or watch.conf writable by group/others or owned by another user (not recommended).")
    var allowInsecurePermissions = false

    func run() async throws {
        let role = ProcessInfo.processInfo.environment[WorkerEnvironment.generation] == nil ? "master" : "worker"
        BatonLogging.bootstrap()
        var logger = Logger(label: "hello")
        logger[metadataKey: "role"] = "\(role)"
        logger[metadataKey: "pid"] = "\(getpid())"

        try await Baton.run(logger: logger, master: makeMasterConfiguration) { worker in
            try await serve(worker, logger: logger)
        }
    }

    private var configPath: String? {
        if let config { return config }
        return FileManager.default.fileExists(atPath: "hello.watch.conf") ? "hello.watch.conf" : nil
    }

    /// With a watch.conf: the seed workflow (BinName staged and started, upgrades when the file
    /// changes or on SIGHUP). Without: this executable, upgraded on SIGHUP from the same path.
    private func makeMasterConfiguration() throws -> MasterConfiguration {
        let arguments = Array(CommandLine.arguments.dropFirst())
        var configuration: MasterConfiguration
        if let configPath {
            configuration = try WatchConfigDeployment(
                configPath: configPath, arguments: arguments, portOverride: port,
                allowInsecurePermissions: allowInsecurePermissions).masterConfiguration()
        } else {
            let executable = try Baton.currentExecutablePath()
            configuration = MasterConfiguration(listen: [.tcp(host: "0.0.0.0", port: port ?? 8080)]) {
                LaunchPlan(executable: executable, arguments: arguments, version: "1")
            }
        }
        configuration.probation = .milliseconds(Int64(probation * 1000))
        configuration.reexecMasterOnUpgrade = reexecMasterOnUpgrade
        configuration.metricsListen = try metricsListen.map { try ListenAddress(parsing: $0) }
        configuration.controlSocket = ControlProtocol.socketPath(configPath: configPath)
        configuration.readyTimeout = .milliseconds(Int64(readyTimeout * 1000))
        configuration.drainTimeout = .milliseconds(Int64(drainTimeout * 1000))
        return configuration
    }

    private func serve(_ worker: BatonWorker, logger: Logger) async throws {
        let router = Router()
        router.get("hello") { _, _ in
            HelloAnswer(message: "Hello from Baton", ver: worker.version, pid: Int(getpid()))
        }
        // A slow request, to watch one finish on the old generation during an upgrade.
        router.get("sleep") { request, _ in
            let milliseconds = min(max(request.uri.queryParameters.get("ms", as: Int.self) ?? 1000, 0), 60_000)
            try await Task.sleep(for: .milliseconds(milliseconds))
            return HelloAnswer(message: "slept \(milliseconds) ms", ver: worker.version, pid: Int(getpid()))
        }
        try await BatonApplication(router: router, worker: worker, configuration: BatonServerConfiguration(), logger: logger).runService()
    }
}

struct HelloAnswer: ResponseEncodable {
    let message: String
    let ver: String
    let pid: Int
}
