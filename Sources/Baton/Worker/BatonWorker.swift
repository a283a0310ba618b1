#if canImport(Glibc)
import Glibc
#endif
import CBaton

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

    /// A hand-over made by hand (tests, or a custom launcher); see ``fromEnvironment()``.
    public init(generation: Int, version: String, masterPID: pid_t, listeners: [Listener], notifySocket: String?) {
        self.generation = generation
        self.version = version
        self.masterPID = masterPID
        self.listeners = listeners
        self.notifySocket = notifySocket
    }

    /// Takes over what a Baton master passed to this process, or returns nil when this process
    /// was not started by one (then it should act as the master itself).
    ///
    /// Adopts the listeners, removes the protocol variables from the environment (nothing this
    /// worker starts inherits them), arranges to get SIGTERM — a drain — if the master dies, and
    /// ignores SIGHUP, which is the master's upgrade signal and must not kill a worker.
    public static func fromEnvironment() throws -> BatonWorker? {
        let environment = ProcessEnvironment.current()
        guard let generationText = environment[WorkerEnvironment.generation] else { return nil }
        guard let generation = Int(generationText),
              let masterPID = environment[WorkerEnvironment.masterPID].flatMap({ pid_t($0) }) else {
            throw BatonError.invalidEnvironment("\(WorkerEnvironment.generation) or \(WorkerEnvironment.masterPID) is malformed")
        }
        guard let listeners = try SocketActivation.adoptListeners(environment: environment) else {
            throw BatonError.invalidEnvironment("started by a Baton master but LISTEN_PID does not name this process")
        }
        let worker = BatonWorker(
            generation: generation, version: environment[WorkerEnvironment.version] ?? "",
            masterPID: masterPID, listeners: listeners, notifySocket: environment[WorkerEnvironment.notifySocket])
        for name in [WorkerEnvironment.generation, WorkerEnvironment.version, WorkerEnvironment.masterPID, WorkerEnvironment.notifySocket] {
            unsetenv(name)
        }
        signal(SIGHUP, SIG_IGN)
        // Workers spawned by the master's long-lived spawner thread; if the master is gone
        // already (getppid changed), the signal would never come: stop now instead.
        _ = baton_set_parent_death_signal(SIGTERM)
        guard getppid() == masterPID else {
            throw BatonError.invalidEnvironment("the master (pid \(masterPID)) exited before this worker started")
        }
        return worker
    }

    /// Tells the master this worker accepts connections (`READY=1`).
    public func ready(status: String? = nil) throws {
        try SDNotify.send(NotifyMessage([("READY", "1")] + (status.map { [("STATUS", $0)] } ?? [])), to: notifySocket)
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
