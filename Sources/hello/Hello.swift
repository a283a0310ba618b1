import ArgumentParser
import Baton
import BatonCommandLine
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
import HummingbirdCore
import HummingbirdHTTP2
import HummingbirdTLS
import HummingbirdWebSocket
import Logging
import NIOSSL
import Synchronization

/// The seed's demo server: `GET /hello` answers which version and which worker process served;
/// `GET /sleep?ms=N` does the same after N milliseconds (at most 60 s); `/ws` is a WebSocket echo.
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

    @Option(help: ArgumentHelp("Also serve HTTP/2 without TLS (h2c, prior knowledge) on this port.", valueName: "port"))
    var h2cPort: Int?

    @Option(help: ArgumentHelp("Also serve HTTPS on this port: HTTP/2 or HTTP/1.1, chosen by ALPN (needs --tls-cert and --tls-key).", valueName: "port"))
    var tlsPort: Int?

    @Option(help: ArgumentHelp("Also serve HTTP/1.1 with WebSockets (/ws, wss://) over TLS on this port (needs --tls-cert and --tls-key).", valueName: "port"))
    var wssPort: Int?

    @Option(help: ArgumentHelp("The TLS certificate chain (PEM) for --tls-port and --wss-port.", valueName: "file"))
    var tlsCert: String?

    @Option(help: ArgumentHelp("The TLS private key (PEM) for --tls-port and --wss-port.", valueName: "file"))
    var tlsKey: String?

    @OptionGroup var master: MasterOptions

    // Test aids: a bad release on purpose, to see a canary upgrade roll it back.

    @Option(help: ArgumentHelp("Test aid: answer 500 to this percentage of requests (evenly: N in every 100).", valueName: "percent"))
    var injectErrors: Int = 0

    @Option(help: ArgumentHelp("Test aid: add this many milliseconds to every answer.", valueName: "ms"))
    var injectLatency: Int = 0

    @Option(help: ArgumentHelp("Test aid: inject only in the generation started as this version (watch.conf's Ver); default: every one.", valueName: "ver"))
    var injectIntoVersion: String?

    // A handler that does blocking work the wrong way, to check that Baton's own work in a
    // worker never waits for the task pool it blocks.

    @Flag(help: "Test aid: serve GET /block?after=MS&ms=MS, which waits `after` ms, then holds its thread of the task pool for `ms` ms (at most 60 s each).")
    var blockRoute = false

    func validate() throws {
        guard (0...100).contains(injectErrors) else { throw ValidationError("--inject-errors must be 0…100") }
        guard (0...60_000).contains(injectLatency) else { throw ValidationError("--inject-latency must be 0…60000 ms") }
        let extras = [("--h2c-port", h2cPort), ("--tls-port", tlsPort), ("--wss-port", wssPort)].compactMap { name, port in port.map { (name, $0) } }
        for (index, (name, extra)) in extras.enumerated() {
            guard (1...65_535).contains(extra) else { throw ValidationError("\(name) must be 1…65535") }
            guard extra != port else { throw ValidationError("\(name) must differ from --port") }
            if let other = extras[..<index].first(where: { $0.1 == extra }) { throw ValidationError("\(other.0) and \(name) must differ") }
        }
        let servesTLS = tlsPort != nil || wssPort != nil
        guard servesTLS == (tlsCert != nil), servesTLS == (tlsKey != nil) else {
            throw ValidationError("--tls-cert and --tls-key go together, with --tls-port or --wss-port")
        }
    }

    /// The server's TLS settings from `--tls-cert` and `--tls-key`; a clear error if either file
    /// cannot be read as PEM. The master checks them before it starts anything, and each worker
    /// reads them again (a new generation gets the files as they are at its start).
    func tlsConfiguration() throws -> TLSConfiguration? {
        guard let tlsCert, let tlsKey else { return nil }
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(tlsCert)
        } catch {
            throw ValidationError("--tls-cert \(tlsCert): not a readable PEM certificate chain (\(error))")
        }
        guard !chain.isEmpty else { throw ValidationError("--tls-cert \(tlsCert): no certificate in it") }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: tlsKey, format: .pem)
        } catch {
            throw ValidationError("--tls-key \(tlsKey): not a readable PEM private key (\(error))")
        }
        return TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
    }

    func run() async throws {
        _ = try tlsConfiguration()  // refuse to start on a certificate or key that cannot serve
        let extraListen: [ListenAddress] = [h2cPort, tlsPort, wssPort].compactMap { $0.map { .tcp(host: "0.0.0.0", port: $0) } }
        try await EmbeddedApp.run(label: "hello", config: config, port: port, extraListen: extraListen, options: master) { worker, logger in
            try await serve(worker, logger: logger)
        }
    }

    private func serve(_ worker: BatonWorker, logger: Logger) async throws {
        let router = Router()
        if injectErrors > 0 || injectLatency > 0, injectIntoVersion.map({ $0 == worker.version }) ?? true {
            logger.warning("test aid: this generation answers 500 to \(injectErrors)% of requests and adds \(injectLatency) ms to every answer")
            router.add(middleware: InjectedFaults(errorPercent: injectErrors, latency: .milliseconds(injectLatency)))
        }
        router.get("hello") { _, _ in
            HelloAnswer(message: "Hello from Baton", ver: worker.version, pid: Int(getpid()))
        }
        // A slow request, to watch one finish on the old generation during an upgrade.
        router.get("sleep") { request, _ in
            let milliseconds = min(max(request.uri.queryParameters.get("ms", as: Int.self) ?? 1000, 0), 60_000)
            try await Task.sleep(for: .milliseconds(milliseconds))
            return HelloAnswer(message: "slept \(milliseconds) ms", ver: worker.version, pid: Int(getpid()))
        }
        if blockRoute {
            router.get("block") { request, _ in
                let (after, milliseconds) = (request.uri.queryParameters.get("after", as: Int.self) ?? 0, request.uri.queryParameters.get("ms", as: Int.self) ?? 1000)
                try await Task.sleep(for: .milliseconds(min(max(after, 0), 60_000)))
                usleep(UInt32(min(max(milliseconds, 0), 60_000)) * 1000)
                return HelloAnswer(message: "held a thread \(milliseconds) ms", ver: worker.version, pid: Int(getpid()))
            }
        }
        // WebSocket echo at /ws; when its connection is drained, the client is told first (then
        // Baton closes it with 1001).
        let webSocketRouter = Router(context: BasicWebSocketRequestContext.self)
        webSocketRouter.ws("ws") { inbound, outbound, _ in
            try await BatonDrain.withDrainHandler {
                for try await message in inbound.messages(maxSize: 1 << 16) {
                    switch message {
                    case .text(let text): try await outbound.write(.text(text))
                    case .binary(let bytes): try await outbound.write(.binary(bytes))
                    }
                }
            } onDrain: {
                try? await outbound.write(.text("baton: draining generation \(worker.generation), reconnect"))
            }
        }
        // Listeners are named host_port (Listener.name): the h2c one gets HTTP/2's builder, the
        // TLS one HTTP/2 or HTTP/1.1 by ALPN, the wss one HTTP/1.1 with WebSocket upgrades over
        // TLS; the others HTTP/1.1 with WebSocket upgrades.
        var servers: [String: HTTPServerBuilder] = [:]
        if let h2cPort { servers["0.0.0.0_\(h2cPort)"] = .plaintextHTTP2() }
        if let tls = try tlsConfiguration() {
            if let tlsPort { servers["0.0.0.0_\(tlsPort)"] = try .http2Upgrade(tlsConfiguration: tls) }
            if let wssPort { servers["0.0.0.0_\(wssPort)"] = try .tls(.http1WebSocketUpgrade(webSocketRouter: webSocketRouter), tlsConfiguration: tls) }
        }
        try await BatonApplication(router: router, worker: worker, configuration: BatonServerConfiguration(),
                                   server: .http1WebSocketUpgrade(webSocketRouter: webSocketRouter), servers: servers, logger: logger)
            .runService()
    }
}

struct HelloAnswer: ResponseEncodable {
    let message: String
    let ver: String
    let pid: Int
}

/// `--inject-errors` and `--inject-latency`: a release that is bad on purpose.
struct InjectedFaults<Context: RequestContext>: RouterMiddleware {
    let errorPercent: Int
    let latency: Duration
    private let answered = Counter()

    init(errorPercent: Int, latency: Duration) {
        self.errorPercent = errorPercent
        self.latency = latency
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if latency > .zero { try await Task.sleep(for: latency) }
        let n = answered.next()
        if (n + 1) * errorPercent / 100 > n * errorPercent / 100 {
            return Response(status: .internalServerError)
        }
        return try await next(request, context)
    }

    final class Counter: Sendable {
        private let value = Mutex(0)
        func next() -> Int { value.withLock { n in defer { n += 1 }; return n } }
    }
}
