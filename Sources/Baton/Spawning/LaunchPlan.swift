/// What the master starts for a new generation.
public struct LaunchPlan: Sendable, Equatable {
    /// Absolute path of the executable. It is resolved again at every upgrade, so a file
    /// replaced by rename is what the next generation runs.
    public var executable: String
    /// Arguments after argv[0].
    public var arguments: [String]
    /// The version the generation reports (`BATON_VERSION`), e.g. watch.conf's `Ver`.
    public var version: String
    /// Extra environment variables for the worker.
    public var environment: [String: String]
    /// Where this generation listens; nil keeps the master's current listeners. A new address is
    /// bound before the generation starts; an address no generation uses any more is closed
    /// once the generations that used it have drained.
    public var listen: [ListenAddress]?
    /// Start this release as a canary (watch.conf's `Canary`); nil: the usual upgrade. Only an
    /// upgrade reads it: the master keeps the plans it runs without it.
    public var canary: CanarySettings?

    /// A plan to start `executable` with `arguments`.
    public init(executable: String, arguments: [String] = [], version: String = "", environment: [String: String] = [:],
                listen: [ListenAddress]? = nil, canary: CanarySettings? = nil) {
        self.executable = executable
        self.arguments = arguments
        self.version = version
        self.environment = environment
        self.listen = listen
        self.canary = canary
    }
}
