import ArgumentParser
import Baton
import BatonCommandLine
import BatonVapor
import Foundation
import Logging
import Vapor

/// `hello` as a Vapor app under Baton: `GET /hello` answers which version and which worker process
/// served, `GET /sleep?ms=N` after N ms, `POST /echo` returns the body, `GET /stream?chunks=N&ms=M`
/// streams N lines M ms apart, `/ws` is a WebSocket echoing text. Started by hand it is the Baton master and runs itself as the
/// worker; SIGHUP upgrades it to the `vapor-hello` binary now on disk.
@main
struct VaporHello: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vapor-hello",
        abstract: "Baton's Vapor demo server: zero-downtime upgrades on SIGHUP.",
        discussion: """
            GET /hello answers {"message": …, "ver": …, "pid": …}. Send SIGHUP to the master to start \
            the vapor-hello binary now on disk as a new generation; the old one drains and exits.
            """)

    @ArgumentParser.Option(help: "watch.conf to read HttpPort and Ver from (default: ./vapor-hello.watch.conf when present).")
    var config: String?

    @ArgumentParser.Option(help: "Port to listen on (overrides HttpPort; default 8080).")
    var port: Int?

    @OptionGroup var master: MasterOptions

    @ArgumentParser.Option(help: "Largest request body, in bytes (413 beyond).")
    var maxBodySize: Int = 1 << 20

    func run() async throws {
        try await EmbeddedApp.run(label: "vapor-hello", config: config, port: port, options: master) { worker, logger in
            try await serve(worker, logger: logger)
        }
    }

    private func serve(_ worker: BatonWorker, logger: Logger) async throws {
        // Vapor must not parse this program's arguments (they are ours).
        let app = try await Application.make(Environment(name: "production", arguments: ["vapor-hello"]))
        app.logger = logger
        // Vapor's default middleware minus the per-request info log line (a busy server's log
        // would be nothing else); the error middleware stays.
        app.middleware = Middlewares()
        app.middleware.use(ErrorMiddleware.default(environment: app.environment))
        routes(app, worker: worker)
        var configuration = BatonVaporConfiguration()
        configuration.maxBodySize = maxBodySize
        try await app.runBaton(worker: worker, configuration: configuration)
    }

    private func routes(_ app: Application, worker: BatonWorker) {
        app.get("hello") { _ in
            HelloAnswer(message: "Hello from Baton", ver: worker.version, pid: Int(getpid()))
        }
        // A slow request, to watch one finish on the old generation during an upgrade.
        app.get("sleep") { request async throws -> HelloAnswer in
            let milliseconds = min(max(request.query[Int.self, at: "ms"] ?? 1000, 0), 60_000)
            try await Task.sleep(for: .milliseconds(milliseconds))
            return HelloAnswer(message: "slept \(milliseconds) ms", ver: worker.version, pid: Int(getpid()))
        }
        app.on(.POST, "echo", body: .collect) { request -> Response in
            var headers = HTTPHeaders()
            headers.contentType = request.headers.contentType ?? .binary
            return Response(status: .ok, headers: headers, body: .init(buffer: request.body.data ?? ByteBuffer()))
        }
        // A WebSocket that echoes text messages. The synchronous `onUpgrade`: it runs on the event
        // loop before the first frame is read. Vapor runs an async one in a Task, and a frame
        // arriving before that Task has set `onText` is dropped (the client never gets its echo).
        app.webSocket("ws") { (_: Request, ws: WebSocket) in
            ws.onText { ws, text in
                ws.send(text)
            }
        }
        // N lines, M ms apart, each written as soon as it is produced.
        app.get("stream") { request -> Response in
            let chunks = min(max(request.query[Int.self, at: "chunks"] ?? 5, 0), 10_000)
            let milliseconds = min(max(request.query[Int.self, at: "ms"] ?? 100, 0), 60_000)
            let pid = getpid()
            return Response(status: .ok, body: .init(managedAsyncStream: { writer in
                for index in 0..<chunks {
                    if index > 0 { try await Task.sleep(for: .milliseconds(milliseconds)) }
                    try await writer.writeBuffer(ByteBuffer(string: "chunk \(index + 1)/\(chunks) pid \(pid)\n"))
                }
            }))
        }
    }
}

struct HelloAnswer: Content {
    let message: String
    let ver: String
    let pid: Int
}
