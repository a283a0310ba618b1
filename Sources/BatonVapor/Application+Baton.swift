import Baton
import BatonNIO
import Logging
import ServiceLifecycle
import Vapor

/// Serving a Vapor application on a Baton worker's listeners, with Baton's drain.
extension Application {
    /// Serves this application on the listeners a Baton master passed to this worker until
    /// SIGTERM (the master's drain order) or SIGINT, then drains and shuts the application down.
    ///
    /// Boots the application (lifecycle handlers run), installs a ``BatonVaporServer`` as
    /// `app.server`, reports readiness, and on the signal stops accepting and finishes every
    /// connection without a client error. Baton handles the signals, not Vapor's serve command.
    ///
    /// ```swift
    /// try await Baton.run(logger: logger, master: masterConfiguration) { worker in
    ///     let app = try await Application.make(.production)
    ///     app.get("hello") { _ in "Hello" }
    ///     try await app.runBaton(worker: worker)
    /// }
    /// ```
    public func runBaton(worker: BatonWorker, configuration: BatonVaporConfiguration = .init()) async throws {
        let server = BatonVaporServer(application: self, worker: worker, configuration: configuration)
        servers.use { _ in server }  // one instance: Vapor calls the factory on every `app.server`
        do {
            try await asyncBoot()
            let group = ServiceGroup(configuration: .init(
                services: [BatonVaporService(server: server)],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            try await group.run()
        } catch {
            try? await asyncShutdown()
            throw error
        }
        try await asyncShutdown()
    }
}

/// Starts the server, waits for graceful shutdown, drains.
private struct BatonVaporService: Service {
    let server: BatonVaporServer

    func run() async throws {
        try await server.start(address: nil)
        try? await gracefulShutdown()
        await server.shutdown()
    }
}
