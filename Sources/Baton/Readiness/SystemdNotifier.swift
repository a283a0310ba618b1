#if canImport(Glibc)
import Glibc
#endif

/// The master's own conversation with systemd (`Type=notify` / `Type=notify-reload`), kept apart
/// from the workers': systemd's `NOTIFY_SOCKET` is taken from the environment at start (so no
/// child inherits it) and only the master writes to it.
struct SystemdNotifier: Sendable {
    let socket: String?

    /// Takes `NOTIFY_SOCKET` out of the environment.
    static func fromEnvironment() -> SystemdNotifier {
        let socket = getenv("NOTIFY_SOCKET").map { String(cString: $0) }
        unsetenv("NOTIFY_SOCKET")
        return SystemdNotifier(socket: socket)
    }

    func send(_ fields: [(key: String, value: String)]) {
        _ = try? SDNotify.send(NotifyMessage(fields), to: socket)
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
