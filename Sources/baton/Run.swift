import ArgumentParser
import Baton
import BatonCommandLine
#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging

extension BatonCommand {
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a server under a Baton master (external mode).",
            discussion: """
                The server gets the listeners as systemd socket activation does (fds from 3, LISTEN_FDS, \
                LISTEN_FDNAMES, LISTEN_PID) and should send READY=1 to NOTIFY_SOCKET once it accepts, then \
                drain and exit on SIGTERM. With --config, watch.conf's BinName is the program (staged \
                into .baton/releases first) and HttpPort its listener; arguments after -- are passed to it.

                Examples:
                  baton run --listen :8080 -- python3 Examples/python-worker/app.py
                  baton run --config /srv/app/watch.conf
                """)

        @Option(help: "watch.conf in the seed format; its changes trigger upgrades.")
        var config: String?

        @Option(help: ArgumentHelp("Address to listen on: :8080, 127.0.0.1:8080, [::1]:8080 or unix:/path (repeatable).", valueName: "addr"))
        var listen: [String] = []

        @Option(help: "Name of the listeners in LISTEN_FDNAMES (one per --listen, or one for all).")
        var name: [String] = []

        @Option(help: "Readiness: 'notify' (wait for READY=1) or 'uptime:SECONDS' (ready once up that long).")
        var ready: String = "notify"

        @Option(help: "Control socket path (default: beside --config, under $RUNTIME_DIRECTORY, or ./.baton/control.sock).")
        var control: String?

        @OptionGroup var master: MasterOptions

        @Argument(parsing: .postTerminator, help: "The program and its arguments (after --).")
        var command: [String] = []

        func validate() throws {
            if config == nil && command.isEmpty { throw ValidationError("give the program to run after --, or --config with a BinName") }
            if config == nil && listen.isEmpty && !BatonMaster.inheritsListeners {
                throw ValidationError("give at least one --listen address (or run under systemd socket activation)")
            }
            if name.count > 1 && name.count != listen.count { throw ValidationError("give one --name per --listen, or a single --name") }
            _ = try readiness()
        }

        func run() async throws {
            BatonLogging.bootstrap()
            var logger = Logger(label: "baton")
            logger[metadataKey: "pid"] = "\(getpid())"
            var configuration: MasterConfiguration
            if let config {
                configuration = try master.deployment(configPath: config, arguments: command).masterConfiguration()
                if !listen.isEmpty { configuration.listen = try addresses() }
            } else {
                let command = self.command
                let listen = try addresses()
                configuration = MasterConfiguration(listen: listen) {
                    // Resolved at every upgrade: a binary replaced on disk is what starts next.
                    LaunchPlan(executable: try Self.resolve(command[0]), arguments: Array(command.dropFirst()))
                }
            }
            configuration.readiness = try readiness()
            try master.apply(to: &configuration)
            configuration.controlSocket = control ?? ControlProtocol.socketPath(configPath: config)
            configuration.listenerNames = name
            try await Baton.runMaster(configuration, logger: logger)
        }

        private func addresses() throws -> [ListenAddress] {
            try listen.map { try ListenAddress(parsing: $0) }
        }

        private func readiness() throws -> MasterConfiguration.Readiness {
            if ready == "notify" { return .notify }
            if ready.hasPrefix("uptime:"), let seconds = Double(ready.dropFirst("uptime:".count)), seconds >= 0 {
                return .uptime(.milliseconds(Int64(seconds * 1000)))
            }
            throw ValidationError("--ready must be 'notify' or 'uptime:SECONDS', not '\(ready)'")
        }

        /// `name` as an absolute path (see `ProcessEnvironment.executablePath`).
        static func resolve(_ name: String) throws -> String {
            guard let path = ProcessEnvironment.executablePath(name) else {
                throw ValidationError(name.contains("/") ? "'\(name)': the working directory cannot be read" : "'\(name)' is not an executable found in PATH")
            }
            return path
        }
    }
}
