/// How a ``BatonMaster`` binds, starts and replaces its workers.
///
/// ```swift
/// var configuration = MasterConfiguration(listen: [.tcp(host: "0.0.0.0", port: 8080), .unix(path: "/run/app.sock")]) {
///     LaunchPlan(executable: "/srv/app/app", version: "2")   // read again at every upgrade
/// }
/// configuration.drainTimeout = .seconds(60)
/// configuration.controlSocket = "/srv/app/.baton/control.sock"   // for `baton reload|status|stop`
/// ```
public struct MasterConfiguration: Sendable {
    /// Addresses to bind when the master starts. Ignored when the master itself was handed
    /// listeners by systemd socket activation.
    public var listen: [ListenAddress]
    /// Names for the listeners in `LISTEN_FDNAMES`: one per `listen` address, or one for all
    /// (default: the address).
    public var listenerNames: [String] = []
    /// Listen backlog for the sockets the master binds.
    public var backlog: Int32 = Listener.defaultBacklog
    /// How the master learns that a new generation is ready.
    public enum Readiness: Sendable, Equatable {
        /// The worker sends `READY=1` to `NOTIFY_SOCKET` (sd_notify).
        case notify
        /// The worker counts as ready once it has stayed up this long (for programs that do
        /// not speak sd_notify).
        case uptime(Duration)
    }

    /// How readiness is detected.
    public var readiness: Readiness = .notify
    /// How long a new generation may take to send `READY=1` before it is killed and the upgrade
    /// counts as failed.
    public var readyTimeout: Duration = .seconds(30)
    /// How long an old generation may take to drain after SIGTERM before it gets SIGKILL.
    public var drainTimeout: Duration = .seconds(30)
    /// At most this many generations drain at once. Long-lived connections (WebSockets) keep a
    /// draining generation alive for its whole close window; when upgrades come faster, the
    /// oldest draining generation is told to close its WebSockets sooner (within a fifth of
    /// their close window). At least 1.
    public var maxDrainingGenerations = 2
    /// A generation that dies by itself this soon after it took over is rolled back: the
    /// release it replaced is started again on the same sockets.
    public var probation: Duration = .seconds(10)
    /// Called after each upgrade, rollback or restart with the executables that live
    /// generations and a possible rollback still need (e.g. to prune a release store).
    public var onReleasesInUse: (@Sendable (Set<String>) -> Void)?
    /// A file whose changes trigger an upgrade (watch.conf), watched with inotify.
    public var watchFile: String?
    /// How long the watched file must stay unchanged before the upgrade (read at each change).
    public var watchQuietPeriod: @Sendable () -> Duration = { .seconds(5) }
    /// Where to serve the metrics over HTTP (`GET /metrics`), e.g. `127.0.0.1:9464`; nil for
    /// none (they are always on the control socket: `baton metrics`). Must not be one of `listen`.
    public var metricsListen: ListenAddress?
    /// Where to serve the control protocol (`ControlProtocol`); nil for no control socket.
    public var controlSocket: String?
    /// Whether an upgrade triggered by SIGHUP, watch.conf or `baton reload` re-executes the
    /// master too when the master's own binary changed on disk (embedded mode: the app's
    /// binary). Off by default: re-executing the master is a step of its own, taken on purpose
    /// (SIGUSR2 or `baton reload --master`), so an ordinary deploy never changes the process
    /// that decides rollbacks; the master logs a notice when its binary on disk is newer.
    public var reexecMasterOnUpgrade = false
    /// How long the workers keep serving after the master died (SIGKILL, a crash, the OOM
    /// killer), waiting for the next master started with the same command to adopt them: a
    /// keeper process holds everything it needs, at an adopt socket beside ``controlSocket``.
    /// Zero: no keeper, and the workers drain as soon as their master is gone. Needs a control
    /// socket.
    public var successorTimeout: Duration = .seconds(30)
    /// Whether the keeper starts this master's command again, at once, when the master dies
    /// outright, instead of waiting for someone to run it: the new master adopts the workers. For
    /// a systemd unit with `ExitType=cgroup`, which then stays active (the new master claims the
    /// unit with `MAINPID=`: `NotifyAccess=all`); also for a master with no supervisor. At most 5
    /// times in 30 s. Needs a keeper (``successorTimeout`` above zero, a control socket).
    public var respawnMaster = false
    /// First and longest delay before restarting a worker that died by itself; the delay
    /// doubles with each consecutive failure and resets when a generation becomes ready.
    public var restartBackoff: (first: Duration, max: Duration) = (.milliseconds(100), .seconds(10))
    /// Called at every start and upgrade to decide what to run: the executable path is
    /// resolved afresh each time, so a binary replaced on disk is what the next generation runs.
    /// A thrown error fails that upgrade (with the error in the log) and changes nothing.
    public var launch: @Sendable () throws -> LaunchPlan

    /// Listens on `listen`; `launch` says what to start at each upgrade.
    public init(listen: [ListenAddress], launch: @escaping @Sendable () throws -> LaunchPlan) {
        self.listen = listen
        self.launch = launch
    }
}

extension MasterStateMachine.Settings {
    /// What the state machine needs of `configuration`.
    init(_ configuration: MasterConfiguration, listenersFromSystemd: Bool) {
        readyTimeout = configuration.readyTimeout
        drainTimeout = configuration.drainTimeout
        maxDrainingGenerations = max(1, configuration.maxDrainingGenerations)
        probation = configuration.probation
        restartBackoffFirst = configuration.restartBackoff.first
        restartBackoffMax = configuration.restartBackoff.max
        if case .uptime(let delay) = configuration.readiness { readyAfterUptime = delay }
        reexecMasterOnUpgrade = configuration.reexecMasterOnUpgrade
        self.listenersFromSystemd = listenersFromSystemd
    }
}
