#if canImport(Glibc)
import Glibc
#endif
import CBaton

/// The master's ends of one worker's channels: its ``WorkerControl`` channel, and the sending
/// end of its ``ConnectionInbox`` until the worker drains (then only the generations it
/// replaced hold a copy).
struct WorkerChannels {
    let control: Int32
    /// -1 once closed.
    private(set) var inbox: Int32
    /// A pidfd on the worker, which the keeper holds a copy of (-1: none).
    var pidfd: Int32

    init(control: Int32, inbox: Int32, pidfd: Int32 = -1) {
        self.control = control
        self.inbox = inbox
        self.pidfd = pidfd
    }

    mutating func closeInbox() {
        if inbox >= 0 { Glibc.close(inbox) }
        inbox = -1
    }

    func close() {
        Glibc.close(control)
        if inbox >= 0 { Glibc.close(inbox) }
        if pidfd >= 0 { Glibc.close(pidfd) }
    }

    /// Every descriptor it holds, for the keeper.
    var descriptors: [Int32] { [control, inbox, pidfd].filter { $0 >= 0 } }
}

extension Spawner {
    /// Starts generation `number` of `plan` on `listeners`, with its control channel and
    /// connection inbox where ``WorkerDescriptors`` puts them, and watches it: `onExit` runs
    /// once it has exited and been reaped. Returns its pid and the master's ends of its channels.
    /// With `canary`, the worker is told it is a canary (`BATON_CANARY=1`).
    func spawnWorker(_ plan: LaunchPlan, generation number: Int, listeners: [Listener], notifySocketPath: String, canary: Bool = false,
                     successorTimeout: Duration? = nil, watcher: ChildWatcher, onExit: @escaping @Sendable (pid_t, ExitStatus) -> Void) async throws -> (pid_t, WorkerChannels) {
        let control = try WorkerControl.make()
        let inbox: ConnectionInbox
        do {
            inbox = try ConnectionInbox.make()
        } catch {
            close(control.masterEnd)
            close(control.workerEnd)
            throw error
        }
        var channels = WorkerChannels(control: control.masterEnd, inbox: inbox.senderEnd)
        // The worker has its copies now (or never will).
        defer { close(control.workerEnd); close(inbox.receiverEnd) }
        do {
            let environment = WorkerEnvironment.make(
                inherited: ProcessEnvironment.current(), plan: plan, listeners: listeners, generation: number,
                notifySocketPath: notifySocketPath, masterPID: getpid(), control: true, canary: canary,
                successorTimeout: successorTimeout)
            let layout = WorkerDescriptors(listenerCount: listeners.count)
            let descriptors = layout.order(listeners: listeners.map(\.fd), control: control.workerEnd, inbox: inbox.receiverEnd)
            let pid = try await spawn(plan, environment: environment, descriptors: descriptors)
            do {
                try watcher.watch(pid, onExit: onExit)
            } catch {
                // A child we cannot watch is a child we cannot manage: take it down now.
                kill(pid, SIGKILL)
                var status: Int32 = 0
                waitpid(pid, &status, 0)
                throw error
            }
            channels.pidfd = baton_pidfd_open(pid)
            return (pid, channels)
        } catch {
            channels.close()
            throw error
        }
    }
}
