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

    public init(executable: String, arguments: [String] = [], version: String = "", environment: [String: String] = [:]) {
        self.executable = executable
        self.arguments = arguments
        self.version = version
        self.environment = environment
    }
}
