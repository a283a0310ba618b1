import BatonNIO
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1

/// Hummingbird's HTTP/1.1 child channel with Baton's drain behaviour: the pipeline of
/// `HTTP1Channel`, plus a `ConnectionDrainHandler` where it can see HTTP versions.
///
/// A copy of `HTTP1Channel`'s pipeline, from before Baton could take Hummingbird's server
/// builders: `.http1()` given to ``BatonApplication`` now gets the same pipeline, with the drain
/// put in by `DrainHandlers`. It stays the default of a ``BatonApplication`` given no builder
/// (and the child channel for ``BatonServer`` users) until the benchmarks have compared the two.
public struct BatonHTTP1Channel: ServerChildChannel, HTTPChannelHandler {
    /// What ``setup(channel:logger:)`` makes of a connection for ``handle(value:logger:)``: its request
    /// and response parts as an async channel, as Hummingbird's `HTTP1Channel` has it.
    public typealias Value = NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>

    /// Answers each request.
    public let responder: HTTPChannelHandler.Responder
    /// Hummingbird's HTTP/1 settings (decoder limits, idle timeout, extra handlers).
    public let configuration: HTTP1Channel.Configuration
    /// How long a keep-alive connection must have been quiet before a drain closes it.
    public let idleGrace: TimeAmount

    /// A channel that answers with `responder`.
    public init(responder: @escaping HTTPChannelHandler.Responder, configuration: HTTP1Channel.Configuration = .init(), idleGrace: TimeAmount = .seconds(1)) {
        self.responder = responder
        self.configuration = configuration
        self.idleGrace = idleGrace
    }

    /// Builds the pipeline: HTTP/1 codec, drain handler, HTTP types codec, Hummingbird's handlers.
    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            var limits = NIOHTTPDecoderLimitConfiguration()
            limits.maxHeaderFieldSize = configuration.httpDecoder.maxHeaderFieldSize
            limits.maxHeaderListSize = configuration.httpDecoder.maxHeaderListSize
            limits.maxHeaderFieldCount = configuration.httpDecoder.maxHeaderFieldCount
            let pipeline = channel.pipeline.syncOperations
            try pipeline.configureHTTPServerPipeline(
                withPipeliningAssistance: false,
                withErrorHandling: false,
                withOutboundHeaderValidation: false,
                withEncoderConfiguration: .init(),
                withDecoderLimitConfiguration: limits)
            try pipeline.addHandler(ConnectionDrainHandler(idleGrace: idleGrace))
            try pipeline.addHandler(HTTP1ToHTTPServerCodec(secure: false))
            try pipeline.addHandlers(configuration.additionalChannelHandlers())
            try pipeline.addHandler(HTTPConnectionStateHandler(idleTimeout: configuration.idleTimeout.map { .init($0) }, logger: logger))
            return try NIOAsyncChannel(wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
        }
    }

    /// Runs Hummingbird's request loop on the connection.
    public func handle(value: Value, logger: Logger) async {
        await handleHTTP(asyncChannel: value, logger: logger)
    }
}
