#if canImport(Glibc)
import Glibc
#endif
import Logging
import ServiceLifecycle

/// Zero-downtime binary upgrades for servers on Linux.
///
/// One binary plays two roles. Started by hand (or by systemd) it is the **master**: it binds
/// the listeners, starts itself again as a **worker** on them, and on SIGHUP starts the binary
/// that is on disk now as a new generation, waits for it to be ready, and lets the old one drain.
/// Started by a master, it is a worker and serves.
///
/// ```swift
/// try await Baton.run(logger: logger) {
///     let executable = try Baton.currentExecutablePath()   // read once, at start
///     return MasterConfiguration(listen: [.tcp(host: "0.0.0.0", port: 8080)]) {
///         LaunchPlan(executable: executable, arguments: Array(CommandLine.arguments.dropFirst()))
///     }
/// } worker: { worker in
///     // serve on worker.listeners, call worker.ready(), drain on SIGTERM
/// }
/// ```
///
/// `BatonHummingbird`'s `BatonApplication` and `BatonVapor`'s `app.runBaton(worker:)` do the
/// worker's part for a Hummingbird router or a Vapor application.
public enum Baton {
    /// Runs this process in the role it was started in: `worker` when a Baton master started
    /// it, otherwise a master built from `master()` until SIGTERM/SIGINT.
    public static func run(
        logger: Logger,
        master: () throws -> MasterConfiguration,
        worker: (BatonWorker) async throws -> Void
    ) async throws {
        if let handOver = try BatonWorker.fromEnvironment(logger: logger) {
            try await worker(handOver)
        } else {
            try await runMaster(master(), logger: logger)
        }
    }

    /// Runs a master in a `ServiceGroup` that turns SIGTERM and SIGINT into a graceful shutdown.
    public static func runMaster(_ configuration: MasterConfiguration, logger: Logger) async throws {
        let master = BatonMaster(configuration: configuration, logger: logger)
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: master, successTerminationBehavior: .gracefullyShutdownGroup)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await group.run()
    }

    /// The absolute path of the running executable, read from `/proc/self/exe`. Read it once at
    /// start: once the file is replaced, the link names the deleted old file.
    public static func currentExecutablePath() throws -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { throw BatonError.errno("readlink /proc/self/exe") }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
