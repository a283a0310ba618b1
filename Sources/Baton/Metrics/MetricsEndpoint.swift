import NIOCore
import NIOHTTP1
import NIOPosix

/// Serves the master's metrics over HTTP (`GET /metrics`, Prometheus text format) on an address
/// of its own, never one of the app's listeners. It is the master's own socket: workers do not
/// get it, and a re-execution of the master binds it again.
final class MetricsEndpoint: Sendable {
    private let channel: any Channel
    let address: String

    private init(channel: any Channel, address: String) {
        self.channel = channel
        self.address = address
    }

    /// Binds `address` and answers with `text()` for every `GET /metrics`.
    static func start(on address: ListenAddress, text: @escaping @Sendable () -> String) async throws -> MetricsEndpoint {
        let listener = try Listener.bind(address, backlog: 64)
        do {
            let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .childChannelInitializer { channel in
                    channel.pipeline.configureHTTPServerPipeline().flatMap {
                        channel.pipeline.addHandler(MetricsHandler(text: text))
                    }
                }
                .withBoundSocket(listener.fd).get()
            let shown = (try? listener.localAddress()).map { "\($0)" } ?? address.description
            return MetricsEndpoint(channel: channel, address: shown)
        } catch {
            listener.close()
            throw error
        }
    }

    func close() async {
        try? await channel.close()
    }
}

/// One request, one answer: the metrics for `GET /metrics`, 404 elsewhere, 405 for other methods.
private final class MetricsHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let text: @Sendable () -> String

    init(text: @escaping @Sendable () -> String) { self.text = text }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let request) = unwrapInboundIn(data) else { return }
        let path = request.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? request.uri
        let (status, body): (HTTPResponseStatus, String) =
            request.method != .GET && request.method != .HEAD ? (.methodNotAllowed, "only GET\n")
            : path == "/metrics" ? (.ok, text())
            : (.notFound, "metrics are at /metrics\n")
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: status == .ok ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain")
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))), promise: nil)
        if request.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }
}
