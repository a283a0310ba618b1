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
import Logging

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

    @OptionGroup var master: MasterOptions

    func run() async throws {
        try await EmbeddedApp.run(label: "hello", config: config, port: port, options: master) { worker, logger in
            try await serve(worker, logger: logger)
        }
    }

    private func serve(_ worker: BatonWorker, logger: Logger) async throws {
        let router = Router()
        router.get("hello") { _, _ in
            HelloAnswer(message: "Hello from Baton", ver: worker.version, pid: Int(getpid()))
        }
        // A slow request, to watch one finish on the old generation during an upgrade.
        router.get("sleep") { request, _ in
            let milliseconds = min(max(request.uri.queryParameters.get("ms", as: Int.self) ?? 1000, 0), 60_000)
            try await Task.sleep(for: .milliseconds(milliseconds))
            return HelloAnswer(message: "slept \(milliseconds) ms", ver: worker.version, pid: Int(getpid()))
        }
        try await BatonApplication(router: router, worker: worker, configuration: BatonServerConfiguration(), logger: logger).runService()
    }
}

struct HelloAnswer: ResponseEncodable {
    let message: String
    let ver: String
    let pid: Int
}
