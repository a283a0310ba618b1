#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle
import UnixSignals

/// The master process: owns the listeners, starts each generation of workers on them, and keeps
/// one pid for its whole life.
///
/// Run it as a `Service` in a `ServiceGroup` (SIGTERM/SIGINT as graceful-shutdown signals): it
/// binds (or adopts from systemd) its listeners, starts generation 1, upgrades on SIGHUP or
/// ``requestUpgrade(reason:)``, restarts a worker that dies by itself, and on graceful shutdown
/// drains every generation and returns.
public final class BatonMaster: Service, Sendable {
    /// Something that happened, for the master's single event loop.
    enum Event: Sendable {
        case upgrade(reason: String, reply: (@Sendable (UpgradeOutcome) -> Void)?)
        case notified(pid_t, NotifyMessage)
        case exited(pid_t, ExitStatus)
        case readyTimeout(generation: Int)
        case drainTimeout(generation: Int)
        case restart
        case shutdown
        indirect case timer(id: Int, Event)
    }

    let configuration: MasterConfiguration
    let logger: Logger
    private let events: AsyncStream<Event>
    private let continuation: AsyncStream<Event>.Continuation
    private let snapshot = NIOLockedValueBox<[Generation]>([])
    private let lastOutcome = NIOLockedValueBox<UpgradeOutcome?>(nil)
    private let startedAt = ContinuousClock.now

    /// A master that does nothing until ``run()``.
    public init(configuration: MasterConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        (self.events, self.continuation) = AsyncStream.makeStream(of: Event.self)
    }

    /// The generations alive now, oldest first.
    public var generations: [Generation] { snapshot.withLockedValue { $0 } }

    /// The outcome of the last upgrade, restart or rollback.
    public var lastUpgrade: UpgradeOutcome? { lastOutcome.withLockedValue { $0 } }

    /// Asks for an upgrade and waits for its outcome. Requests made while an upgrade runs are
    /// coalesced into one follow-up upgrade, whose outcome they all receive.
    public func requestUpgrade(reason: String) async -> UpgradeOutcome {
        await withCheckedContinuation { (reply: CheckedContinuation<UpgradeOutcome, Never>) in
            let result = continuation.yield(.upgrade(reason: reason, reply: { reply.resume(returning: $0) }))
            if case .terminated = result { reply.resume(returning: .failed(reason: "the master is not running")) }
        }
    }

    /// Binds the listeners, starts generation 1 and serves triggers until graceful shutdown has
    /// drained every generation. Throws when the listeners cannot be bound or generation 1 never
    /// becomes ready.
    public func run() async throws {
        let systemd = SystemdNotifier.fromEnvironment()
        let listeners = ListenerSet(initial: try openListeners(), backlog: configuration.backlog)
        let continuation = self.continuation
        let spawner = Spawner()
        var notify: NotifySocket?
        var watcher: ConfigWatcher?
        var control: ControlServer?
        do {
            notify = try NotifySocket { pid, message in continuation.yield(.notified(pid, message)) }
            watcher = try configuration.watchFile.map { path in
                try ConfigWatcher(path: path, quietPeriod: configuration.watchQuietPeriod) {
                    continuation.yield(.upgrade(reason: "\(path) changed", reply: nil))
                }
            }
            if let watcher { logger.info("watching \(watcher.path) for deploys") }
            control = await bindControlSocket()
            let loop = MasterLoop(master: self, listeners: listeners, notifySocket: notify!.path, spawner: spawner, systemd: systemd)
            try await serve(loop, control: control)
        } catch {
            await release()
            throw error
        }
        await release()

        func release() async {
            watcher?.stop()
            notify?.close()
            await control?.close()
            listeners.closeAll()
            await spawner.shutdown()
        }
    }

    /// Runs the loop with its triggers (SIGHUP, control socket) until it ends.
    private func serve(_ loop: MasterLoop, control: ControlServer?) async throws {
        let continuation = self.continuation
        let events = self.events
        try await withGracefulShutdownHandler {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await _ in await UnixSignalsSequence(trapping: .sighup) {
                        continuation.yield(.upgrade(reason: "SIGHUP", reply: nil))
                    }
                }
                if let control {
                    let logger = self.logger
                    group.addTask { await control.serve(logger: logger) { await self.answer($0) } }
                }
                defer { group.cancelAll() }
                try await loop.run(events: events)
            }
        } onGracefulShutdown: {
            continuation.yield(.shutdown)
        }
    }

    /// Without a control socket the master still serves and upgrades on SIGHUP and watch.conf:
    /// a problem here is logged, not fatal.
    private func bindControlSocket() async -> ControlServer? {
        guard let path = configuration.controlSocket else { return nil }
        do {
            let control = try await ControlServer.bind(path: path)
            logger.info("control socket \(control.path) (mode 0600)")
            return control
        } catch {
            logger.error("no control socket: \(error); `baton reload|status|stop` cannot reach this master")
            return nil
        }
    }

    /// Answers one control request.
    func answer(_ request: ControlProtocol.Request) async -> ControlProtocol.Response {
        switch request.command {
        case "reload":
            let outcome = await requestUpgrade(reason: "baton reload")
            if case .succeeded = outcome { return .init(ok: true, message: outcome.description) }
            return .init(ok: false, message: outcome.description)
        case "status":
            return .init(ok: true, message: "master pid \(getpid())", status: status())
        case "stop":
            continuation.yield(.shutdown)
            return .init(ok: true, message: "master pid \(getpid()) is draining every generation and stopping", status: status())
        default:
            return .init(ok: false, message: "unknown command '\(request.command)' (expected reload, status or stop)")
        }
    }

    /// A snapshot for `status`.
    public func status() -> ControlProtocol.MasterStatus {
        let now = ContinuousClock.now
        func seconds(_ duration: Duration) -> Double { Double(duration.milliseconds) / 1000 }
        return .init(
            masterPID: getpid(), uptimeSeconds: seconds(startedAt.duration(to: now)),
            generations: generations.map {
                .init(generation: $0.number, pid: $0.pid, version: $0.version, state: $0.state.rawValue,
                      ageSeconds: seconds($0.startedAt.duration(to: now)), status: $0.status)
            },
            lastUpgrade: lastUpgrade?.description)
    }

    private func openListeners() throws -> [(address: ListenAddress?, listener: Listener)] {
        if let inherited = try SocketActivation.adoptListeners() {
            logger.info("adopted \(inherited.count) listener(s) from socket activation: \(inherited.map(\.name).joined(separator: ", ")); every generation gets these (listen addresses and HttpPort are not bound)")
            return inherited.map { (nil, $0) }
        }
        var bound: [(address: ListenAddress?, listener: Listener)] = []
        do {
            for (index, address) in configuration.listen.enumerated() {
                let names = configuration.listenerNames
                let name = names.count == 1 ? names[0] : index < names.count ? names[index] : nil
                let listener = try Listener.bind(address, name: name, backlog: configuration.backlog)
                bound.append((address, listener))
                let shown = (try? listener.localAddress()).map { "\($0)" } ?? address.description
                logger.info("listening on \(address) (\(shown), fd \(listener.fd), backlog \(configuration.backlog))")
            }
        } catch {
            for entry in bound { entry.listener.close() }
            throw error
        }
        return bound
    }

    /// Asks for an upgrade without waiting for it (as SIGHUP does).
    public func triggerUpgrade(reason: String) {
        continuation.yield(.upgrade(reason: reason, reply: nil))
    }

    func post(_ event: Event) { continuation.yield(event) }
    func publish(_ generations: [Generation]) { snapshot.withLockedValue { $0 = generations } }
    func publish(_ outcome: UpgradeOutcome) { lastOutcome.withLockedValue { $0 = outcome } }
}
