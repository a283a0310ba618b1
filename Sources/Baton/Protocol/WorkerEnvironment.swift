/// The environment variables of the master–worker protocol.
package enum WorkerEnvironment {
    package static let generation = "BATON_GENERATION"
    package static let version = "BATON_VERSION"
    package static let masterPID = "BATON_MASTER_PID"
    package static let notifySocket = "NOTIFY_SOCKET"
    package static let listenFDs = "LISTEN_FDS"
    package static let listenFDNames = "LISTEN_FDNAMES"
    package static let listenPID = "LISTEN_PID"
    /// The worker's end of its ``WorkerControl`` channel: the descriptor after the listeners.
    package static let controlFD = "BATON_CONTROL_FD"
    /// The receiving end of the worker's ``ConnectionInbox``: the descriptor after the control
    /// channel (protocol 3).
    package static let connectionInboxFD = "BATON_HANDOFF_FD"
    /// `1`: this generation is the canary of a canary upgrade: it serves only what arrives in
    /// its inbox until the master says `accept` (protocol 4).
    package static let canary = "BATON_CANARY"
    /// Seconds a worker keeps serving after its master died, waiting for a successor to adopt it
    /// (protocol 6; absent or 0: drain at once, as before).
    package static let successorTimeout = "BATON_SUCCESSOR_TIMEOUT"
    /// The master⇄worker protocol version the master speaks (absent: 1).
    package static let protocolVersion = "BATON_PROTOCOL"
    /// The protocol this release speaks.
    ///
    /// - 1: the variables above; the worker may tie its life to the thread that spawned it
    ///   (`PR_SET_PDEATHSIG`).
    /// - 2: the master may re-execute itself in place (same pid, every thread but one gone), so a
    ///   worker must watch the master *process* (a pidfd), never its spawning thread. A version-2
    ///   master still execs from the thread that spawned its workers, so version-1 workers survive.
    /// - 3: the worker gets a ``ConnectionInbox`` (`BATON_HANDOFF_FD`); one that serves what
    ///   arrives there says `BATON_HANDOFF=1` with `READY=1`, and a draining worker's orders may
    ///   carry the next generation's inbox (`handoff=1`, the descriptor attached). A worker that
    ///   ignores all of it drains as in version 2.
    /// - 4: canary upgrades (``WorkerOrder``): a worker that says `BATON_CANARY=1` with `READY=1`
    ///   follows `share` and `accept` orders on its control channel, reports `BATON_STATS=` every
    ///   second, and, started with `BATON_CANARY=1`, accepts nothing until told. The master only
    ///   runs a canary between two such workers.
    /// - 5: a worker that says `BATON_RESUME=1` with `READY=1` takes a `resume` order while it
    ///   drains (its successor died): it serves again, and drains next on ``DrainOrders`` alone.
    /// - 6: a master with a keeper says `BATON_SUCCESSOR_TIMEOUT=S`: a worker whose master died
    ///   keeps serving for S seconds, and follows the first master that says `master pid=P` on its
    ///   control channel, its pidfd attached (``WorkerOrder/master(pid:pidfd:)``): the one that
    ///   adopted it. None within S seconds, or the channel closed: it drains, as before.
    package static let currentProtocol = 6

    /// Variables never passed on from the master's own environment: they describe the master's
    /// own activation (systemd's sockets, notify socket, watchdog) or an earlier Baton hand-over.
    static func isInheritable(_ name: String) -> Bool {
        !name.hasPrefix("BATON_") && !name.hasPrefix("LISTEN_")
            && !["NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC"].contains(name)
    }

    /// The environment of a new worker: the master's inheritable variables, the protocol
    /// variables (all but `LISTEN_PID`, which only the child can know), then `plan.environment`.
    /// With `control`, the control channel and the connection inbox are announced where
    /// ``WorkerDescriptors`` puts them.
    static func make(
        inherited: [String: String],
        plan: LaunchPlan,
        listeners: [Listener],
        generation: Int,
        notifySocketPath: String,
        masterPID: Int32,
        control: Bool = false,
        canary: Bool = false,
        successorTimeout: Duration? = nil
    ) -> [String: String] {
        var result = inherited.filter { isInheritable($0.key) }
        result[listenFDs] = String(listeners.count)
        result[listenFDNames] = listeners.map(\.name).joined(separator: ":")
        result[notifySocket] = notifySocketPath
        result[self.generation] = String(generation)
        result[version] = plan.version
        result[self.masterPID] = String(masterPID)
        result[protocolVersion] = String(currentProtocol)
        if control {
            let layout = WorkerDescriptors(listenerCount: listeners.count)
            result[controlFD] = String(layout.control)
            result[connectionInboxFD] = String(layout.inbox)
        }
        for (name, value) in plan.environment { result[name] = value }
        if canary && control { result[self.canary] = "1" }
        if let successorTimeout, successorTimeout > .zero, control {
            result[self.successorTimeout] = String(Double(successorTimeout.milliseconds) / 1000)
        }
        return result
    }
}
