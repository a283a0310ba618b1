#if canImport(Glibc)
import Glibc
#endif
import CBaton
import Logging

/// The worker's side of the hand-over: the listeners and facts the master passed, and the way to
/// answer it (`READY=1` once serving, `STOPPING=1` when draining).
public struct BatonWorker: Sendable {
    /// This generation's number, 1 for the first.
    public let generation: Int
    /// The version the master started this generation as (watch.conf's `Ver`).
    public let version: String
    /// The master's pid.
    public let masterPID: pid_t
    /// The listeners passed at fd 3, 4, …, in order.
    public let listeners: [Listener]
    /// Where readiness goes (the master's notify socket).
    public let notifySocket: String?
    /// The worker's end of the master's control channel (`BATON_CONTROL_FD`), if it was given one.
    public let controlFD: Int32?
    /// The receiving end of this worker's `ConnectionInbox` (`BATON_HANDOFF_FD`), if it was
    /// given one: where the previous generation hands its keep-alive connections over.
    public let connectionInboxFD: Int32?
    /// What the master writes on ``controlFD``.
    public let control: ControlChannel?
    /// Started as the canary of a canary upgrade (`BATON_CANARY=1`): serve only the connections
    /// that arrive in the inbox until the master says `accept` (see ``WorkerOrder``).
    public let isCanary: Bool
    /// How long to keep serving after the master died, waiting for a successor to adopt this
    /// worker (`BATON_SUCCESSOR_TIMEOUT`, protocol 6); nil: drain at once. It takes effect only
    /// for a worker that follows its control channel (see `MasterWatch`).
    public let successorTimeout: Duration?

    /// A hand-over made by hand (tests, or a custom launcher); see ``fromEnvironment(logger:)``.
    public init(generation: Int, version: String, masterPID: pid_t, listeners: [Listener], notifySocket: String?,
                controlFD: Int32? = nil, connectionInboxFD: Int32? = nil, isCanary: Bool = false, successorTimeout: Duration? = nil) {
        self.successorTimeout = successorTimeout
        self.generation = generation
        self.version = version
        self.masterPID = masterPID
        self.listeners = listeners
        self.notifySocket = notifySocket
        self.controlFD = controlFD
        self.connectionInboxFD = connectionInboxFD
        self.control = controlFD.map(ControlChannel.init(fd:))
        self.isCanary = isCanary && connectionInboxFD != nil
    }

    /// Takes over what a Baton master passed to this process, or returns nil when this process
    /// was not started by one (then it should act as the master itself).
    ///
    /// Adopts the listeners, removes the protocol variables from the environment (nothing this
    /// worker starts inherits them), arranges to get SIGTERM — a drain — if the master exits, and
    /// ignores SIGHUP, which is the master's upgrade signal and must not kill a worker.
    ///
    /// A control channel or connection inbox named somewhere else than `WorkerDescriptors`
    /// puts it, or not open, is left alone: the worker then drains without the master's orders
    /// or takes no connections over, and says so once on `logger` at warning.
    ///
    /// ```swift
    /// if let worker = try BatonWorker.fromEnvironment(logger: logger) {
    ///     // serve on worker.listeners; worker.ready() once accepting; drain on SIGTERM
    /// } else {
    ///     // started by hand: be the master, or serve on a port of its own
    /// }
    /// ```
    public static func fromEnvironment(logger: Logger = Logger(label: "Baton")) throws -> BatonWorker? {
        let environment = ProcessEnvironment.current()
        guard let generationText = environment[WorkerEnvironment.generation] else { return nil }
        guard let generation = Int(generationText),
              let masterPID = environment[WorkerEnvironment.masterPID].flatMap({ pid_t($0) }) else {
            throw BatonError.invalidEnvironment("\(WorkerEnvironment.generation) or \(WorkerEnvironment.masterPID) is malformed")
        }
        guard let listeners = try SocketActivation.adoptListeners(environment: environment) else {
            throw BatonError.invalidEnvironment("started by a Baton master but LISTEN_PID does not name this process")
        }
        let layout = WorkerDescriptors(listenerCount: listeners.count)
        let control = HandedDescriptor.adopt(WorkerEnvironment.controlFD, in: environment, at: layout.control)
        let inbox = HandedDescriptor.adopt(WorkerEnvironment.connectionInboxFD, in: environment, at: layout.inbox)
        for problem in [control.problem, inbox.problem].compactMap({ $0 }) { logger.warning("\(problem)") }
        let (controlFD, inboxFD) = (control.fd, inbox.fd)
        let successorTimeout = environment[WorkerEnvironment.successorTimeout].flatMap(Double.init).flatMap { (seconds: Double) -> Duration? in
            seconds > 0 && seconds < 86_400 ? .milliseconds(Int64(seconds * 1000)) : nil
        }
        let worker = BatonWorker(
            generation: generation, version: environment[WorkerEnvironment.version] ?? "",
            masterPID: masterPID, listeners: listeners, notifySocket: environment[WorkerEnvironment.notifySocket],
            controlFD: controlFD, connectionInboxFD: inboxFD, isCanary: environment[WorkerEnvironment.canary] == "1",
            successorTimeout: successorTimeout)
        for name in [WorkerEnvironment.canary, WorkerEnvironment.generation, WorkerEnvironment.version, WorkerEnvironment.masterPID,
                     WorkerEnvironment.notifySocket, WorkerEnvironment.controlFD, WorkerEnvironment.connectionInboxFD,
                     WorkerEnvironment.protocolVersion, WorkerEnvironment.successorTimeout] {
            unsetenv(name)
        }
        signal(SIGHUP, SIG_IGN)
        raiseOpenFileLimit()
        // Drain if the master dies (a pidfd, not PR_SET_PDEATHSIG: see MasterWatch).
        try MasterWatch.start(masterPID: masterPID)
        return worker
    }

    /// Raises this process's soft limit on open files to its hard limit, as Go's runtime does:
    /// the soft limit is often 1024 (systemd's default), far below the connections a server
    /// holds, while the hard limit is the one the operator chose. A worker's connections during an
    /// upgrade add up with its successor's, so it needs the room.
    static func raiseOpenFileLimit() {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
    }

    /// What the master said when it asked this worker to drain (it writes them before SIGTERM);
    /// nil when it said nothing (an older master, no control channel). The caller owns the
    /// orders' ``DrainOrders/connectionInbox`` descriptor.
    public func drainOrders() -> DrainOrders? {
        control?.takeDrainOrders()
    }

    /// Tells the master this worker accepts connections (`READY=1`). With `takesConnections`, it
    /// also says it serves connections handed to its ``connectionInboxFD`` (`BATON_HANDOFF=1`), so
    /// the master lets the previous generation hand its keep-alive connections over. With
    /// `followsCanaryOrders`, it says it follows ``WorkerOrder``s and reports ``RequestStats``
    /// (`BATON_CANARY=1`): it can serve beside a canary, or be one (then it accepts nothing until
    /// told). With `resumes`, it says a drain of it can be called off (`BATON_RESUME=1`): it
    /// takes ``WorkerOrder/resume`` and drains next on ``DrainOrders`` alone.
    public func ready(status: String? = nil, takesConnections: Bool = false, followsCanaryOrders: Bool = false,
                      resumes: Bool = false) throws {
        var fields: [(String, String)] = [("READY", "1")]
        if let status { fields.append(("STATUS", status)) }
        if takesConnections { fields.append((NotifyMessage.takesConnectionsKey, "1")) }
        if followsCanaryOrders { fields.append((NotifyMessage.canaryKey, "1")) }
        if resumes { fields.append((NotifyMessage.resumeKey, "1")) }
        try SDNotify.send(NotifyMessage(fields), to: notifySocket)
    }

    /// Sends the master this worker's request counts (`BATON_STATS=…`), which judge a canary,
    /// and its open connections by kind (`BATON_CONNECTIONS=http1:10,ws:2000`), which
    /// `baton status` and the metrics show.
    public func report(_ stats: RequestStats, connections: String? = nil) throws {
        var fields = [(NotifyMessage.statsKey, stats.wire)]
        if let connections { fields.append((NotifyMessage.connectionsKey, connections)) }
        try SDNotify.send(NotifyMessage(fields), to: notifySocket, orDrop: true)
    }

    /// Tells the master this worker is draining (`STOPPING=1`).
    public func stopping() throws {
        try SDNotify.send(NotifyMessage([("STOPPING", "1")]), to: notifySocket)
    }

    /// Reports a free-form status line (`STATUS=…`).
    public func status(_ text: String) throws {
        try SDNotify.send(NotifyMessage([("STATUS", text)]), to: notifySocket)
    }
}
