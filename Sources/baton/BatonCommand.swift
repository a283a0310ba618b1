import ArgumentParser
import Baton

/// `baton`: run any socket-activation-capable server with zero-downtime upgrades, and operate a
/// running Baton master (embedded apps such as `hello` answer the same commands).
@main
struct BatonCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "baton",
        abstract: "Zero-downtime binary upgrades for servers on Linux.",
        discussion: """
            A Baton master binds the listening sockets once, keeps its pid, and runs your server as \
            workers on them. An upgrade (SIGHUP, a changed watch.conf, or `baton reload`) starts the \
            binary now on disk as a new generation, waits until it is ready, then lets the old one \
            finish its requests and exit.
            """,
        version: BatonVersion.string,
        subcommands: [Run.self, Reload.self, Promote.self, Abort.self, Status.self, Metrics.self, Stop.self, Check.self])
}

/// Options shared by the commands that talk to a running master.
struct ControlOptions: ParsableArguments {
    @Option(help: "The master's control socket (default: found from --config, $RUNTIME_DIRECTORY or ./.baton/control.sock).")
    var control: String?

    @Option(help: "The watch.conf the master was started with (its control socket is beside it).")
    var config: String?

    @Option(help: "Seconds to wait for the master's answer.")
    var timeout: Double = 120

    var socketPath: String { control ?? ControlProtocol.socketPath(configPath: config) }
}

