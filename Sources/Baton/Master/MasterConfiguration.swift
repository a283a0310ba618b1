/// How a ``BatonMaster`` binds, starts and replaces its workers.
public struct MasterConfiguration: Sendable {
    /// Addresses to bind when the master starts. Ignored when the master itself was handed
    /// listeners by systemd socket activation.
    public var listen: [ListenAddress]
    /// Listen backlog for the sockets the master binds.
    public var backlog: Int32 = Listener.defaultBacklog
    /// How long a new generation may take to send `READY=1` before it is killed and the upgrade
    /// counts as failed.
    public var readyTimeout: Duration = .seconds(30)
    /// How long an old generation may take to drain after SIGTERM before it gets SIGKILL.
    public var drainTimeout: Duration = .seconds(30)
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
    /// First and longest delay before restarting a worker that died by itself; the delay
    /// doubles with each consecutive failure and resets when a generation becomes ready.
    public var restartBackoff: (first: Duration, max: Duration) = (.milliseconds(100), .seconds(10))
    /// Called at every start and upgrade to decide what to run: the executable path is
    /// resolved afresh each time, so a binary replaced on disk is what the next generation runs.
    /// A thrown error fails that upgrade (with the error in the log) and changes nothing.
    public var launch: @Sendable () throws -> LaunchPlan

    public init(listen: [ListenAddress], launch: @escaping @Sendable () throws -> LaunchPlan) {
        self.listen = listen
        self.launch = launch
    }
}
