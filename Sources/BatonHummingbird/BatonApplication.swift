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
public struct BatonApplication<Responder: HTTPResponder>: Service
where Responder.Context: InitializableFromSource<ApplicationRequestContextSource> {
    /// Answers requests (usually a built `Router`).
    public let responder: Responder
    /// The hand-over from the master: listeners, generation, readiness.
    public let worker: BatonWorker
    /// Drain settings.
    public var configuration: BatonServerConfiguration
    /// Hummingbird's HTTP/1 settings.
    public var http1: HTTP1Channel.Configuration
    /// Where the server logs.
    public var logger: Logger
    /// NIO event loops for the server.
    public var eventLoopGroup: any EventLoopGroup
    /// Extra services run beside the server.
    public var services: [any Service]

    /// Serves `responder` on `worker`'s listeners.
    public init(responder: Responder, worker: BatonWorker, configuration: BatonServerConfiguration = .init(),
                http1: HTTP1Channel.Configuration = .init(), services: [any Service] = [],
                eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger) {
        self.responder = responder
        self.worker = worker
        self.configuration = configuration
        self.http1 = http1
        self.services = services
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
    }

    /// Serves `router` on `worker`'s listeners.
    public init<Builder: HTTPResponderBuilder>(router: Builder, worker: BatonWorker, configuration: BatonServerConfiguration = .init(),
                                               http1: HTTP1Channel.Configuration = .init(), services: [any Service] = [],
                                               eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger)
    where Builder.Responder == Responder {
        self.init(responder: router.buildResponder(), worker: worker, configuration: configuration, http1: http1,
                  services: services, eventLoopGroup: eventLoopGroup, logger: logger)
    }

    /// Serves until graceful shutdown, then drains.
    public func run() async throws {
        let responder = self.responder
        let logger = self.logger
        // Each answer is counted with the responder's own time (see RequestRecorder): what a
        // canary is judged on, free of the event loops' queueing.
        RequestRecorder.shared.willTimeResponders()
        let channel = BatonHTTP1Channel(responder: { request, writer, channel in
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
        }, configuration: http1, idleGrace: configuration.idleGrace)
        let server = BatonServer(childChannel: channel, worker: worker, configuration: configuration,
                                 eventLoopGroup: eventLoopGroup, logger: logger)
        let group = ServiceGroup(configuration: .init(services: services + [server], logger: logger))
        try await group.run()
    }

    /// Runs the application in a `ServiceGroup` that drains on SIGTERM or SIGINT.
    public func runService() async throws {
        let group = ServiceGroup(configuration: .init(services: [self], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

extension BatonApplication: CustomStringConvertible {
    public var description: String { "BatonApplication" }
}
