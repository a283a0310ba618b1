import Baton
import BatonNIO
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// A Hummingbird application served by a Baton worker: the counterpart of Hummingbird's
/// `Application` for listeners inherited from a Baton master (Hummingbird itself can only bind).
///
/// ```swift
/// try await BatonApplication(router: router, worker: worker, logger: logger).runService()
/// ```
///
/// It takes the server builder an `Application` takes, for every listener or by listener name
/// (the names of `LISTEN_FDNAMES`, `host_port` for Baton's own listeners); each connection gets
/// the drain of the protocol it speaks (`DrainHandlers`):
///
/// ```swift
/// try await BatonApplication(router: router, worker: worker,
///                            servers: ["0.0.0.0_8081": .plaintextHTTP2()], logger: logger).runService()
/// ```
public struct BatonApplication<Responder: HTTPResponder>: Service
where Responder.Context: InitializableFromSource<ApplicationRequestContextSource> {
    /// Answers requests (usually a built `Router`).
    public let responder: Responder
    /// The hand-over from the master: listeners, generation, readiness.
    public let worker: BatonWorker
    /// Drain settings.
    public var configuration: BatonServerConfiguration
    /// Hummingbird's HTTP/1 settings, for the listeners neither ``server`` nor ``servers`` names
    /// a builder for.
    public var http1: HTTP1Channel.Configuration
    /// The server builder for every listener ``servers`` does not name (`.http1()`,
    /// `.plaintextHTTP2()`…); nil: HTTP/1.1 with ``http1``.
    public var server: HTTPServerBuilder?
    /// Server builders by listener name (as in `LISTEN_FDNAMES`).
    public var servers: [String: HTTPServerBuilder]
    /// Where the server logs.
    public var logger: Logger
    /// NIO event loops for the server.
    public var eventLoopGroup: any EventLoopGroup
    /// Extra services run beside the server.
    public var services: [any Service]

    /// Serves `responder` on `worker`'s listeners: with `server` on each (HTTP/1.1 with `http1`
    /// when nil), or with the builder `servers` names for it.
    public init(responder: Responder, worker: BatonWorker, configuration: BatonServerConfiguration = .init(),
                http1: HTTP1Channel.Configuration = .init(), server: HTTPServerBuilder? = nil, servers: [String: HTTPServerBuilder] = [:],
                services: [any Service] = [], eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger) {
        self.responder = responder
        self.worker = worker
        self.configuration = configuration
        self.http1 = http1
        self.server = server
        self.servers = servers
        self.services = services
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
    }

    /// Serves `router` on `worker`'s listeners: with `server` on each (HTTP/1.1 with `http1`
    /// when nil), or with the builder `servers` names for it.
    public init<Builder: HTTPResponderBuilder>(router: Builder, worker: BatonWorker, configuration: BatonServerConfiguration = .init(),
                                               http1: HTTP1Channel.Configuration = .init(), server: HTTPServerBuilder? = nil,
                                               servers: [String: HTTPServerBuilder] = [:], services: [any Service] = [],
                                               eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger)
    where Builder.Responder == Responder {
        self.init(responder: router.buildResponder(), worker: worker, configuration: configuration, http1: http1, server: server,
                  servers: servers, services: services, eventLoopGroup: eventLoopGroup, logger: logger)
    }

    /// Serves until graceful shutdown, then drains.
    public func run() async throws {
        let responder = self.responder
        let logger = self.logger
        // Each answer is counted with the responder's own time (see RequestRecorder): what a
        // canary is judged on, free of the event loops' queueing.
        RequestRecorder.shared.willTimeResponders()
        let respond: HTTPChannelHandler.Responder = { request, writer, channel in
            let context = Responder.Context(source: .init(channel: channel, logger: logger))
            var response: Response
            let started = ContinuousClock.now
            do {
                response = try await responder.respond(to: request, context: context)
            } catch {
                logger.debug("unhandled error: \(error)")
                response = Response(status: .internalServerError)
            }
            let took = ContinuousClock.now - started
            RequestRecorder.shared.record(status: Int(response.status.code), microseconds: took.nanoseconds / 1000)
            try await writer.write(response: response.head, body: response.body)
        }
        let serving = try makeServer(childChannel(respond))
        let group = ServiceGroup(configuration: .init(services: services + [serving], logger: logger))
        try await group.run()
    }

    /// The child channel for every listener: `server`'s (or HTTP/1.1), unless `servers` names
    /// another for some.
    private func childChannel(_ respond: @escaping HTTPChannelHandler.Responder) throws -> any ServerChildChannel {
        let fallback: any ServerChildChannel = try server?.childChannel(responder: respond)
            ?? BatonHTTP1Channel(responder: respond, configuration: http1, idleGrace: configuration.idleGrace)
        guard !servers.isEmpty else { return fallback }
        let names = worker.listeners.map(\.name)
        for name in servers.keys where !names.contains(name) {
            logger.warning("no listener named \(name) (this worker has \(names.joined(separator: ", "))): its server builder is unused")
        }
        var byListener: [Int: any ServerChildChannel] = [:]
        for (index, name) in names.enumerated() {
            if let builder = servers[name] { byListener[index] = try builder.childChannel(responder: respond) }
        }
        return ListenerChildChannels(byListener: byListener, fallback: fallback)
    }

    private func makeServer<C: ServerChildChannel>(_ childChannel: C) -> any Service {
        BatonServer(childChannel: childChannel, worker: worker, configuration: configuration, eventLoopGroup: eventLoopGroup, logger: logger)
    }

    /// Runs the application in a `ServiceGroup` that drains on SIGTERM or SIGINT.
    public func runService() async throws {
        let group = ServiceGroup(configuration: .init(services: [self], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

extension BatonApplication: CustomStringConvertible {
    /// The service's name in ServiceLifecycle's logs.
    public var description: String { "BatonApplication" }
}
