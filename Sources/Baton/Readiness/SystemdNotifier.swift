#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOConcurrencyHelpers

/// The master's own conversation with systemd (`Type=notify` / `Type=notify-reload`), kept apart
/// from the workers': systemd's `NOTIFY_SOCKET` is taken from the environment at start (so no
/// child inherits it) and only the master writes to it.
struct SystemdNotifier: Sendable {
    let socket: String?
    private let logger: Logger
    /// The errors already logged: each kind is said once, not at every message.
    private let reported = NIOLockedValueBox<Set<String>>([])

    init(socket: String?, logger: Logger = Logger(label: "baton.systemd")) {
        self.socket = socket
        self.logger = logger
    }

    /// Takes `NOTIFY_SOCKET` out of the environment. Messages systemd cannot be sent are logged
    /// to `logger` (once per kind of error).
    static func fromEnvironment(logger: Logger = Logger(label: "baton.systemd")) -> SystemdNotifier {
        let socket = getenv("NOTIFY_SOCKET").map { String(cString: $0) }
        unsetenv("NOTIFY_SOCKET")
        return SystemdNotifier(socket: socket, logger: logger)
    }

    func send(_ fields: [(key: String, value: String)]) {
        do {
            try SDNotify.send(NotifyMessage(fields), to: socket)
        } catch {
            // systemd then never hears READY=1 or RELOADING=1 (a start or reload that times out
            // there): say why, once for each kind of failure.
            let kind = "\(error)"
            guard reported.withLockedValue({ $0.insert(kind).inserted }) else { return }
            let what = fields.first.map { "\($0.key)=\($0.value)" } ?? "a message"
            logger.warning("cannot tell systemd \(what): \(error) (the same error again is not logged)")
        }
    }

    /// `READY=1` with a status line: serving (again) after start or an upgrade attempt.
    func ready(_ status: String) { send([("READY", "1"), ("STATUS", status)]) }

    /// `RELOADING=1` with `MONOTONIC_USEC`, as `Type=notify-reload` expects after SIGHUP.
    func reloading(_ status: String) {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let microseconds = UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
        send([("RELOADING", "1"), ("MONOTONIC_USEC", String(microseconds)), ("STATUS", status)])
    }

    func stopping(_ status: String) { send([("STOPPING", "1"), ("STATUS", status)]) }

    /// Says what the state machine decided to tell systemd.
    func tell(_ state: MasterStateMachine.SystemdState) {
        switch state {
        case .ready(let status): ready(status)
        case .reloading(let status): reloading(status)
        case .stopping(let status): stopping(status)
        }
    }
}
