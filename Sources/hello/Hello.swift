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
import Logging
import Synchronization

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

    @Option(help: ArgumentHelp("Also serve HTTP/2 without TLS (h2c, prior knowledge) on this port.", valueName: "port"))
    var h2cPort: Int?

    @OptionGroup var master: MasterOptions

    // Test aids: a bad release on purpose, to see a canary upgrade roll it back.

    @Option(help: ArgumentHelp("Test aid: answer 500 to this percentage of requests (evenly: N in every 100).", valueName: "percent"))
    var injectErrors: Int = 0

    @Option(help: ArgumentHelp("Test aid: add this many milliseconds to every answer.", valueName: "ms"))
    var injectLatency: Int = 0

    @Option(help: ArgumentHelp("Test aid: inject only in the generation started as this version (watch.conf's Ver); default: every one.", valueName: "ver"))
    var injectIntoVersion: String?

    func validate() throws {
        guard (0...100).contains(injectErrors) else { throw ValidationError("--inject-errors must be 0…100") }
        guard (0...60_000).contains(injectLatency) else { throw ValidationError("--inject-latency must be 0…60000 ms") }
        if let h2cPort {
            guard (1...65_535).contains(h2cPort) else { throw ValidationError("--h2c-port must be 1…65535") }
            guard h2cPort != port else { throw ValidationError("--h2c-port must differ from --port") }
        }
    }

    func run() async throws {
        let extraListen: [ListenAddress] = h2cPort.map { [.tcp(host: "0.0.0.0", port: $0)] } ?? []
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
        // Listeners are named host_port (Listener.name): the h2c one gets HTTP/2's builder.
        let servers = h2cPort.map { ["0.0.0.0_\($0)": HTTPServerBuilder.plaintextHTTP2()] } ?? [:]
        try await BatonApplication(router: router, worker: worker, configuration: BatonServerConfiguration(), servers: servers, logger: logger)
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
