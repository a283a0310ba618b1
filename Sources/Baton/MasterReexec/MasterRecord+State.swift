#if canImport(Glibc)
import Glibc
#endif

// Between the state machine's view of the master and the record an exec hands over.
extension MasterRecord {
    /// The record of `machine`'s state, with the descriptors that survive the exec.
    init(_ machine: MasterStateMachine, channels: [Int: WorkerChannels], listeners: ListenerSet,
         sockets: (notify: Socket, control: Socket?), image: MasterImage, processStartedAt: ContinuousClock.Instant,
         metrics: MasterMetrics.Totals) {
        let now = ContinuousClock.now
        func age(_ instant: ContinuousClock.Instant) -> Int64 { MasterRecord.age(instant, now: now) }
        self.init(
            writtenAt: MasterRecord.bootTime(),
            image: .init(path: image.path, arguments: image.arguments, executions: image.executions + 1,
                         processAge: age(processStartedAt)),
            listeners: listeners.bound.map { .init(fd: $0.listener.fd, name: $0.listener.name, address: $0.address?.description) },
            currentListeners: listeners.current.map(\.fd),
            notify: sockets.notify, control: sockets.control,
            generations: machine.generations.compactMap { generation in
                guard let channels = channels[generation.number] else { return nil }
                return .init(number: generation.number, pid: generation.pid, version: generation.version, state: generation.state.rawValue,
                             age: age(generation.startedAt), readyAge: generation.readyAt.map(age), drainAge: generation.drainStartedAt.map(age),
                             status: generation.status, plan: .init(generation.plan), listeners: generation.listeners.map(\.fd),
                             control: channels.control, inbox: channels.inbox >= 0 ? channels.inbox : nil,
                             takesConnections: generation.takesConnections, followsCanaryOrders: generation.followsCanaryOrders,
                             resumes: generation.resumes, resumed: generation.resumed, drainsFor: generation.drainsFor,
                             pidfd: channels.pidfd >= 0 ? channels.pidfd : nil)
            },
            nextNumber: machine.nextNumber, currentPlan: machine.currentPlan.map(MasterRecord.Plan.init),
            previousPlan: machine.previousPlan.map(MasterRecord.Plan.init), consecutiveFailures: machine.consecutiveFailures,
            lastUpgrade: machine.lastUpgrade.map(MasterRecord.Outcome.init))
        reexecFailures = machine.reexecFailures
        lastReexec = machine.lastReexec
        self.metrics = metrics
        masterPID = getpid()
        adoptions = machine.adoptions
        lastAdoption = machine.lastAdoption
        stopping = machine.isStopping ? true : nil
    }

    /// The generation table and channels of this record, for a machine that continues from it.
    func adopted(listeners: ListenerSet) throws -> (MasterStateMachine.Adopted, [Int: WorkerChannels]) {
        let record = self
        func listener(_ fd: Int32) throws -> Listener {
            guard let found = listeners.bound.first(where: { $0.listener.fd == fd }) else {
                throw BatonError.masterHandover("a generation uses fd \(fd), which is not a listener of the record")
            }
            return found.listener
        }
        // A generation that drains may use a socket the master has closed already (an old port
        // after a port change, every socket at a stop): it accepts there no more, so the master
        // has no use for it. Any other generation must find each of its sockets in the record.
        func sockets(of entry: GenerationEntry, _ state: Generation.State) throws -> [Listener] {
            guard state == .draining || state == .abandoned else { return try entry.listeners.map(listener) }
            return entry.listeners.compactMap { fd in listeners.bound.first(where: { $0.listener.fd == fd })?.listener }
        }
        var channels: [Int: WorkerChannels] = [:]
        let generations = try record.generations.map { entry in
            guard let state = Generation.State(rawValue: entry.state) else {
                throw BatonError.masterHandover("unknown generation state '\(entry.state)'")
            }
            var generation = Generation(
                number: entry.number, pid: entry.pid, version: entry.version, state: state,
                startedAt: record.instant(age: entry.age), plan: try entry.plan.launchPlan(),
                listeners: try sockets(of: entry, state), hasInbox: entry.inbox != nil,
                takesConnections: entry.takesConnections ?? false)
            generation.readyAt = entry.readyAge.map(record.instant)
            generation.drainStartedAt = entry.drainAge.map(record.instant)
            generation.status = entry.status
            generation.followsCanaryOrders = entry.followsCanaryOrders ?? false
            generation.resumes = entry.resumes ?? false
            generation.resumed = entry.resumed ?? false
            generation.drainsFor = entry.drainsFor
            channels[entry.number] = WorkerChannels(control: entry.control, inbox: entry.inbox ?? -1, pidfd: entry.pidfd ?? -1)
            return generation
        }
        let adopted = MasterStateMachine.Adopted(
            generations: generations, nextNumber: record.nextNumber, currentPlan: try record.currentPlan?.launchPlan(),
            previousPlan: try record.previousPlan?.launchPlan(), consecutiveFailures: record.consecutiveFailures,
            lastUpgrade: record.lastUpgrade?.outcome, reexecFailures: record.reexecFailures ?? 0,
            adoptions: record.adoptions ?? 0, lastAdoption: record.lastAdoption, stopping: record.stopping ?? false)
        return (adopted, channels)
    }

}
