/// One running instance of the app, started by the master on the shared listeners.
public struct Generation: Sendable, Equatable {
    /// Where a generation is in its life.
    public enum State: String, Sendable {
        /// Spawned, not yet `READY=1`.
        case starting
        /// Ready and receiving new connections.
        case serving
        /// Ready as the canary of a canary upgrade: it serves the share of the traffic the
        /// serving generation passes it, and is judged at the end of its window.
        case canary
        /// Sent SIGTERM: finishing its requests, then exiting.
        case draining
        /// Gave up on (not ready in time): killed, waiting to be reaped.
        case abandoned
    }

    /// 1 for the first generation, then one more at each start.
    public let number: Int
    /// The worker process.
    public let pid: Int32
    /// The version it was started as (`BATON_VERSION`).
    public let version: String
    /// Where it is in its life.
    public internal(set) var state: State
    /// When it was spawned.
    public let startedAt: ContinuousClock.Instant
    /// When it sent `READY=1`.
    public internal(set) var readyAt: ContinuousClock.Instant?
    /// When it was sent SIGTERM.
    public internal(set) var drainStartedAt: ContinuousClock.Instant?
    /// The last `STATUS=` the worker reported.
    public internal(set) var status: String?
    /// What was started.
    public let plan: LaunchPlan
    /// The listeners it was given.
    public let listeners: [Listener]
    /// The master still holds the sending end of its ``ConnectionInbox`` (until it drains: a
    /// canary that is rolled back hands its connections back there).
    var hasInbox: Bool
    /// It said `BATON_HANDOFF=1` when ready: it serves connections sent to its inbox.
    var takesConnections = false
    /// Draining, it hands its connections to this generation's inbox.
    var handsOverTo: Int?
    /// It said `BATON_CANARY=1` when ready: it follows canary orders (``WorkerOrder``) and
    /// reports its counts.
    var followsCanaryOrders = false
    /// It said `BATON_RESUME=1` when ready: a drain of it can be called off (``WorkerOrder/resume``).
    var resumes = false
    /// Its drain was called off once: it had its SIGTERM, and later drains start on orders alone.
    var resumed = false
    /// Draining, it drains for this generation (the one that took over from it).
    var drainsFor: Int?
    /// Told to close its connections now (``MasterStateMachine/Settings/maxDrainingGenerations``).
    var hurried = false
    /// Ready, it waits (still `starting`) for a hurried drain to end before it takes over: the
    /// only `starting` generation that has said it is ready.
    var waitsForRoom: Bool { state == .starting && readyAt != nil }
    /// The request counts it reported last (cumulative since it started).
    public internal(set) var stats = RequestStats()
    /// Its open connections by kind (`http1`, `ws`, …), as it last reported them; nil before
    /// its first report (or from a worker that does not report them).
    public internal(set) var connections: [String: Int]?

    init(number: Int, pid: Int32, version: String, state: State, startedAt: ContinuousClock.Instant, plan: LaunchPlan,
         listeners: [Listener], hasInbox: Bool, takesConnections: Bool = false) {
        self.number = number
        self.pid = pid
        self.version = version
        self.state = state
        self.startedAt = startedAt
        self.plan = plan
        self.listeners = listeners
        self.hasInbox = hasInbox
        self.takesConnections = takesConnections
    }

    var label: String { "generation \(number) (pid \(pid), version \(Self.versionLabel(version)))" }

    /// A version for the log: "-" when there is none.
    static func versionLabel(_ version: String) -> String { version.isEmpty ? "-" : version }
}

/// The result of one upgrade, as reported to whoever asked for it.
public enum UpgradeOutcome: Sendable, Equatable, CustomStringConvertible {
    /// The new generation is serving; the previous ones are draining.
    case succeeded(generation: Int, pid: Int32, version: String, readyAfter: Duration, draining: [Int])
    /// Nothing changed: the reason says why.
    case failed(reason: String)

    /// One line for the log and `baton reload`: "generation 2 (pid …, version 2) ready in 45 ms, generation 1 draining".
    public var description: String {
        switch self {
        case .succeeded(let generation, let pid, let version, let readyAfter, let draining):
            let old = draining.isEmpty ? "" : ", generation \(draining.map(String.init).joined(separator: ", ")) draining"
            return "generation \(generation) (pid \(pid), version \(version.isEmpty ? "-" : version)) ready in \(readyAfter.milliseconds) ms\(old)"
        case .failed(let reason):
            return "upgrade failed: \(reason)"
        }
    }
}
