import Baton
import BatonNIO
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import Vapor

/// Settings of a ``BatonVaporServer``.
public struct BatonVaporConfiguration: Sendable {
    /// The drain: deadline, idle grace (the same rules as BatonHummingbird's).
    public var drain = DrainConfiguration()
    /// The largest request body accepted, in bytes; larger ones are answered 413 (Payload Too
    /// Large) through the application's middleware. nil: `app.routes.defaultMaxBodySize` when
    /// the server starts.
    ///
    /// Bodies are collected before routing (Vapor's streaming request body type is internal), so
    /// this one limit applies to every route: a route's own `body: .collect(maxSize:)` cannot
    /// raise it, and `body: .stream` routes get the collected body.
    public var maxBodySize: Int?

    /// The defaults.
    public init() {}
}

/// A Vapor `Server` that serves the application on the listeners a Baton master passed to this
/// worker (Vapor's own `HTTPServer` can only bind a host:port or a unix path), with Baton's drain.
///
/// Usually started by ``Vapor/Application/runBaton(worker:configuration:)``. It is also a
/// regular Vapor server (`app.servers.use { _ in server }`): `start(address:)` ignores the
/// address (the listeners are the master's), reports readiness and serves; `shutdown()` drains.
public final class BatonVaporServer: Server, Sendable {
    private let application: Application
    private let worker: BatonWorker
    private let configuration: BatonVaporConfiguration
    private let state = NIOLockedValueBox<WorkerConnections?>(nil)
    private let shutdownPromise: EventLoopPromise<Void>

    /// A server for `application` on `worker`'s listeners.
    public init(application: Application, worker: BatonWorker, configuration: BatonVaporConfiguration = .init()) {
        self.application = application
        self.worker = worker
        self.configuration = configuration
        self.shutdownPromise = application.eventLoopGroup.any().makePromise(of: Void.self)
    }

    /// Completes once the server has drained.
    public var onShutdown: EventLoopFuture<Void> { shutdownPromise.futureResult }

    /// Starts accepting on the worker's listeners and reports `READY=1` to the master.
    public func start(address: BindAddress?) async throws {
        let application = self.application
        let logger = application.logger
        if let address {
            logger.warning("BatonVaporServer serves the listeners of its Baton master; address \(address) ignored")
        }
        let tooLarge = application.middleware.resolve().makeResponder(chainingTo: PayloadTooLargeResponder())
        let shared = VaporHTTPHandler.Shared(
            application: application, responder: application.responder.current, tooLarge: tooLarge,
            maxBodySize: configuration.maxBodySize ?? application.routes.defaultMaxBodySize.value,
            serverName: application.http.server.configuration.serverName, logger: logger,
            streamFallbackWarning: NIOLockedValueBox(false))
        let idleGrace = configuration.drain.idleGrace
        let drain = configuration.drain
        // Each answer is counted with the responder's own time (VaporHTTPHandler; see RequestRecorder).
        RequestRecorder.shared.willTimeResponders()
        // The pipeline's generic handlers are made once here, on one thread, before connections
        // come: a new generation handed 32 connections at once crashed once in CI (SIGSEGV in the
        // Swift runtime's swift_checkMetadataState, instantiating ByteToMessageHandler's metadata
        // on two event loops at the same moment).
        _ = Self.httpHandlers(idleGrace: idleGrace)
        let connections = try WorkerConnections(worker: worker, eventLoopGroup: application.eventLoopGroup, logger: logger) { channel in
            channel.eventLoop.makeCompletedFuture {
                try Self.configurePipeline(channel.pipeline.syncOperations, shared: shared, idleGrace: idleGrace)
                // Counts the connection as HTTP/1, and gives it the WebSocket drain should it be
                // upgraded (the socket handler adds it when the drain comes).
                try DrainHandlers.add(to: channel, configuration: drain)
            }
        }
        state.withLockedValue { $0 = connections }
        try connections.ready(status: "generation \(worker.generation) serving")
        logger.info("worker generation \(worker.generation) (version \(worker.version)) serving on \(worker.listeners.map(\.name).joined(separator: ", "))")
    }

    /// NIO's HTTP/1 codec, Baton's drain handler, and the handler that calls Vapor.
    static func configurePipeline(_ pipeline: ChannelPipeline.SynchronousOperations, shared: VaporHTTPHandler.Shared, idleGrace: TimeAmount) throws {
        let handlers = httpHandlers(idleGrace: idleGrace)
        try pipeline.addHandlers(handlers)
        try pipeline.addHandler(VaporHTTPHandler(shared: shared, httpHandlers: handlers))
    }

    /// The HTTP/1 handlers of a connection, in pipeline order: encoder, decoder, protocol errors,
    /// Baton's drain.
    static func httpHandlers(idleGrace: TimeAmount) -> [any RemovableChannelHandler] {
        [HTTPResponseEncoder(), ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)),
         HTTPServerProtocolErrorHandler(), ConnectionDrainHandler(idleGrace: idleGrace)]
    }

    /// Drains (see `BatonNIO.WorkerConnections.drain(_:)`) and completes ``onShutdown``.
    public func shutdown() async {
        guard let connections = state.withLockedValue({ state in defer { state = nil }; return state }) else { return }
        await connections.drain(configuration.drain)
        shutdownPromise.succeed()
    }

    /// Use the async `start(address:)`.
    @available(*, noasync, message: "Use the async start(address:) method instead.")
    public func start(address: BindAddress?) throws {
        let promise = application.eventLoopGroup.any().makePromise(of: Void.self)
        promise.completeWithTask { try await self.start(address: address) }
        try promise.futureResult.wait()
    }

    /// Use the async `shutdown()`.
    @available(*, noasync, message: "Use the async shutdown() method instead.")
    public func shutdown() {
        let promise = application.eventLoopGroup.any().makePromise(of: Void.self)
        promise.completeWithTask { await self.shutdown() }
        try? promise.futureResult.wait()
    }
}

/// Answers 413 by throwing, so that the application's error middleware formats the answer as
/// Vapor itself would (`{"error":true,"reason":"Payload Too Large"}` by default).
private struct PayloadTooLargeResponder: Responder {
    func respond(to request: Request) -> EventLoopFuture<Response> {
        request.eventLoop.makeFailedFuture(Abort(.payloadTooLarge))
    }
}
