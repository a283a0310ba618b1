import Logging

/// Every decision the master makes, and nothing else: a value that takes one event at a time
/// (a trigger, a worker's readiness, an exit, a timer) and returns the actions that follow
/// (spawn, drain, signal, reply, tell systemd, …). It does no I/O and reads no clock (time comes
/// with each event), so every order of events can be tested without a process.
/// ``MasterLoop`` carries the actions out and feeds their results back as events.
struct MasterStateMachine {
    // MARK: Types

    /// The settings decisions depend on (from ``MasterConfiguration``).
    struct Settings: Sendable, Equatable {
        var readyTimeout: Duration = .seconds(30)
        var drainTimeout: Duration = .seconds(30)
        var probation: Duration = .seconds(10)
        var restartBackoffFirst: Duration = .milliseconds(100)
        var restartBackoffMax: Duration = .seconds(10)
        /// A worker counts as ready once it has stayed up this long (nil: it says `READY=1`).
        var readyAfterUptime: Duration?
        var reexecMasterOnUpgrade = false
        /// The listeners came from systemd socket activation: systemd keeps every queue, so a
        /// draining worker never owns one alone.
        var listenersFromSystemd = false
        /// How long a re-execution waits for its answer to be delivered before it execs anyway.
        var execAnswerGrace: Duration = .seconds(2)
        /// At most this many generations drain at once. An upgrade that would make one more
        /// drain hurries the oldest as its new generation starts (``WorkerOrder/hurry``), and the
        /// new generation, once ready, takes over when the hurried one has exited.
        var maxDrainingGenerations = 2
        /// How long a ready generation waits for a hurried drain to end before it takes over
        /// anyway (one generation more than the bound then drains, and the log says so). A
        /// hurried WebSocket closes within a fifth of its window (1 s), after up to a second for
        /// a told client to close by itself and up to a second for a quiet moment.
        var roomWait: Duration = .seconds(5)
    }

    /// Someone waiting for the outcome of a trigger; the loop keeps the continuation behind it.
    struct ReplyToken: Hashable, Sendable { var id: Int }

    /// What a waiter is told.
    enum Reply: Sendable, Equatable {
        case upgrade(UpgradeOutcome)
        case reexec(ReexecAnswer)
        /// The end of a canary upgrade: the verdict, and the upgrade's outcome (succeeded when the
        /// canary was promoted).
        case canary(verdict: String, UpgradeOutcome)
    }

    enum Timer: Hashable, Sendable {
        /// A starting generation must be ready by then.
        case ready(generation: Int)
        /// With uptime readiness: the generation counts as ready.
        case uptime(generation: Int)
        /// A draining generation gets SIGKILL then.
        case drain(generation: Int)
        /// The back-off before starting a worker again is over.
        case restart
        /// A re-execution's answer had time to be delivered: exec.
        case execNow
        /// A canary's window is over: judge it.
        case canaryWindow(generation: Int)
        /// A ready generation has waited long enough for a hurried drain to end: it takes over.
        case room(generation: Int)
    }

    enum CheckResult: Sendable, Equatable {
        case passed(String)
        case refused(String)
    }

    enum Event: Sendable, Equatable {
        /// The master starts with nothing running.
        case start
        /// The master took over a previous image's generations (``init(settings:masterPath:adopting:)``);
        /// `lost` are the pids it could not watch; `execution` counts this image's executions and
        /// `image` describes it for the log (pid, path, versions).
        case resume(lost: [Int32], execution: Int, image: String)
        /// The master took over the generations of a master that died (pid `from`), from its
        /// keeper (``init(settings:masterPath:adopting:)``); `lost` are the pids it could not
        /// watch, `lostGenerations` those whose channels did not come back.
        case adopt(lost: [Int32], lostGenerations: [Int], from: Int32)
        /// SIGHUP, watch.conf, `baton reload`, ``BatonMaster/requestUpgrade(reason:)``.
        case trigger(reason: String, reply: ReplyToken?, masterBinaryChanged: Bool)
        /// `baton reload --canary`: an upgrade whose new release first serves a share of the traffic.
        case canaryTrigger(reason: String, request: CanaryRequest, reply: ReplyToken?, masterBinaryChanged: Bool)
        /// `baton promote` (true) or `baton abort` (false): end a canary's window now.
        case endCanary(promote: Bool, reply: ReplyToken?)
        case launched(LaunchPlan)
        case launchFailed(String)
        case spawned(generation: Int, pid: Int32, listeners: [Listener], hasInbox: Bool)
        case spawnFailed(generation: Int, reason: String)
        case notified(pid: Int32, NotifyMessage)
        case exited(pid: Int32, ExitStatus)
        case timeout(Timer)
        /// SIGUSR2, `baton reload --master`.
        case reexecRequested(reason: String, reply: ReplyToken?)
        case reexecChecked(CheckResult)
        /// The answer to a re-execution request was delivered.
        case execNow
        /// `execve` returned: this image keeps running.
        case execFailed(String)
        case shutdown
    }

    enum Signal: Sendable, Equatable { case terminate, kill }

    enum SystemdState: Sendable, Equatable {
        case ready(String)
        case reloading(String)
        case stopping(String)
    }

    enum Metric: Sendable, Equatable {
        case upgrade(succeeded: Bool)
        case rollback
        case restart
        case reexec(String)
        /// A canary's end: `promoted` or `rolled_back`.
        case canary(String)
        case ready(after: Duration)
        case drained(after: Duration)
        case adoption
    }

    enum Action: Sendable, Equatable {
        /// Run `MasterConfiguration.launch` (off the loop) → ``Event/launched(_:)`` or ``Event/launchFailed(_:)``.
        case launch
        /// An upgrade is about to read watch.conf: a change waiting out its quiet period is part of it.
        case absorbPendingConfigChanges(reason: String)
        /// Start a worker → ``Event/spawned(generation:pid:listeners:hasInbox:)`` or ``Event/spawnFailed(generation:reason:)``.
        case spawn(generation: Int, plan: LaunchPlan)
        /// Start a worker as a canary (`BATON_CANARY=1`: it accepts nothing until told); results as for ``spawn``.
        case spawnCanary(generation: Int, plan: LaunchPlan)
        /// Tell a serving generation to pass `percent` of its traffic to `to`'s inbox (0: stop).
        case sendShare(generation: Int, percent: Int, to: Int?)
        /// Tell a canary to accept on its listeners: it is promoted.
        case sendAccept(generation: Int)
        /// Tell a draining generation to stop draining and serve again (its successor died).
        case sendResume(generation: Int)
        /// Tell a draining generation to close its connections now rather than over its drain's
        /// spread (too many generations are draining).
        case sendHurry(generation: Int)
        /// Tell an adopted generation which master it follows now (`master pid=P`, pidfd attached).
        case announceMaster(generation: Int)
        /// Write ``DrainOrders`` on the generation's control channel, with `handoffTo`'s inbox attached.
        case sendDrainOrders(generation: Int, shared: Set<Int>, handoffTo: Int?, deadline: Duration)
        case signal(pid: Int32, Signal)
        case startTimer(Timer, after: Duration)
        /// The master's copy of a ready generation's inbox is no longer needed.
        case closeInbox(generation: Int)
        /// A generation exited: close the master's ends of its channels.
        case forget(generation: Int)
        case makeListenersCurrent([Listener])
        /// Close every listener that none of `inUse` and no current one needs.
        case closeUnusedListeners(inUse: [Listener])
        /// The master stops: close every listener it bound (and the keeper's copies).
        case closeListeners
        case reply(ReplyToken, Reply)
        case tellSystemd(SystemdState)
        case count(Metric)
        case log(Logger.Level, String)
        /// Run the master's binary in check mode → ``Event/reexecChecked(_:)``.
        case checkMasterImage
        /// Exec the master's binary in place; only a failure comes back (``Event/execFailed(_:)``).
        case execMaster
        /// The executables that live generations and a rollback still need.
        case releasesInUse(Set<String>)
    }

    /// Triggers that came while something was under way: they become one upgrade after it.
    struct FollowUp: Sendable, Equatable {
        var reasons: [String] = []
        var replies: [ReplyToken] = []
        var masterBinaryChanged = false
        /// The last canary asked for among them.
        var canary: CanaryRequest?
    }

    /// An attempt to start a generation: an upgrade (the first start among them), a restart or a rollback.
    struct Attempt: Sendable, Equatable {
        enum Kind: Sendable, Equatable {
            /// `announced`: systemd was told RELOADING=1 already (by the image before a re-execution).
            case upgrade(reason: String, announced: Bool)
            case start
            case restart(LaunchPlan)
            case rollback(LaunchPlan)
        }
        var kind: Kind
        var replies: [ReplyToken]
        /// The plan being started (nil while the launch runs).
        var plan: LaunchPlan?
        /// The generation started for it (nil until spawned).
        var generation: Int?
        var followUp: FollowUp?
        /// Asked to start the new release as a canary.
        var canaryRequest: CanaryRequest?
        /// The canary it runs (from the request and the plan's, once launched).
        var canary: CanarySettings?

        var reason: String {
            switch kind {
            case .upgrade(let reason, _): return reason
            case .start: return "start"
            case .restart: return "restart"
            case .rollback: return "rollback"
            }
        }
        /// Whether it counts in `baton_upgrades_total` (restarts and rollbacks have their own).
        var countsAsUpgrade: Bool { if case .upgrade = kind { return true } else { return false } }
    }

    /// A re-execution of the master: its binary is checked, then exec'd in place.
    struct Reexec: Sendable, Equatable {
        var reason: String
        /// Waiting for the answer (cleared once answered).
        var replies: [ReplyToken]
        /// The check passed: the exec comes next.
        var checked = false
        var followUp: FollowUp?
    }

    /// A canary upgrade's window: the canary serves a share of the traffic beside the baseline.
    struct Trial: Sendable, Equatable {
        /// The upgrade it is part of (its generation is the canary).
        var attempt: Attempt
        var settings: CanarySettings
        var canary: Int
        /// The generation it is compared with, which passes it its share.
        var baseline: Int
        var startedAt: ContinuousClock.Instant
        /// Both generations' counts when the window started.
        var canaryAtStart: RequestStats
        var baselineAtStart: RequestStats
    }

    enum Phase: Sendable, Equatable {
        /// Nothing under way.
        case idle
        case upgrading(Attempt)
        /// A canary serves its share until it is judged, promoted or aborted.
        case canary(Trial)
        case reexecuting(Reexec)
        /// Every generation drains; the master ends when the last one has exited.
        case shuttingDown
    }

    // MARK: State

    let settings: Settings
    /// The master's own binary, for the log.
    let masterPath: String
    private(set) var phase: Phase = .idle
    /// Live generations, oldest first.
    private(set) var generations: [Generation] = []
    private(set) var nextNumber = 1
    /// The release of the generation serving now (or last).
    private(set) var currentPlan: LaunchPlan?
    /// The release the serving generation replaced: what a rollback starts.
    private(set) var previousPlan: LaunchPlan?
    /// Starts that failed in a row (the restart back-off doubles with each).
    private(set) var consecutiveFailures = 0
    /// A restart waits out its back-off.
    private(set) var restartScheduled = false
    private(set) var lastUpgrade: UpgradeOutcome?
    private(set) var reexecFailures = 0
    private(set) var lastReexec: String?
    /// Masters that died and whose generations this one (or an earlier image) took over.
    private(set) var adoptions = 0
    private(set) var lastAdoption: String?
    /// Whether the master's binary on disk was newer at the last trigger.
    private(set) var masterBinaryChanged = false
    /// How the last canary upgrade ended.
    private(set) var lastCanary: String?

    private var actions: [Action] = []

    init(settings: Settings, masterPath: String) {
        self.settings = settings
        self.masterPath = masterPath
    }

    /// What a previous image of this master handed over (``MasterRecord``).
    struct Adopted: Sendable, Equatable {
        var generations: [Generation]
        var nextNumber: Int
        var currentPlan: LaunchPlan?
        var previousPlan: LaunchPlan?
        var consecutiveFailures: Int
        var lastUpgrade: UpgradeOutcome?
        var reexecFailures: Int
        var adoptions = 0
        var lastAdoption: String?
        /// The master that wrote it was stopping.
        var stopping = false
    }

    /// A machine that continues from `adopted`; feed it ``Event/resume(lost:execution:)`` first.
    init(settings: Settings, masterPath: String, adopting adopted: Adopted) {
        self.init(settings: settings, masterPath: masterPath)
        generations = adopted.generations
        nextNumber = adopted.nextNumber
        currentPlan = adopted.currentPlan
        previousPlan = adopted.previousPlan
        consecutiveFailures = adopted.consecutiveFailures
        lastUpgrade = adopted.lastUpgrade
        reexecFailures = adopted.reexecFailures
        adoptions = adopted.adoptions
        lastAdoption = adopted.lastAdoption
        adoptedWhileStopping = adopted.stopping
    }

    /// The master this one adopts from was stopping when it died: this one finishes the stop.
    private var adoptedWhileStopping = false

    /// A stop is under way: every generation drains, and the master exits when they have.
    var isStopping: Bool { phase == .shuttingDown }

    /// Whether every generation has exited after a shutdown.
    var isFinished: Bool { phase == .shuttingDown && generations.isEmpty }

    /// The first generation never became ready and nothing is left: no release to fall back on.
    var firstGenerationFailed: Bool {
        guard currentPlan == nil, generations.isEmpty else { return false }
        if case .upgrading = phase { return false }
        return phase != .shuttingDown
    }

    /// An upgrade or a re-execution is under way (`status`).
    var isBusy: Bool {
        switch phase {
        case .upgrading, .reexecuting, .canary: return true
        case .idle, .shuttingDown: return false
        }
    }

    /// The canary window under way, for `status`: who serves what, and the counts so far.
    var canaryStatus: String? {
        guard case .canary(let trial) = phase,
              let canary = generations.first(where: { $0.number == trial.canary }),
              let baseline = generations.first(where: { $0.number == trial.baseline }),
              let counts = trialCounts(trial) else { return nil }
        return "\(canary.label) takes \(trial.settings.percent)% of the traffic from \(baseline.label) for \(trial.settings.window.shortDescription): \(CanaryJudge.figures(canary: counts.canary, baseline: counts.baseline))"
    }

    // MARK: Events

    /// Takes one event at `now`; returns what to do, in order.
    mutating func handle(_ event: Event, at now: ContinuousClock.Instant) -> [Action] {
        actions = []
        switch event {
        case .start:
            startAttempt(.start, replies: [], followUp: nil)
        case .resume(let lost, let execution, let image):
            resume(lost: lost, execution: execution, image: image, now: now)
        case .adopt(let lost, let lostGenerations, let from):
            adopt(lost: lost, lostGenerations: lostGenerations, from: from, now: now)
        case .trigger(let reason, let reply, let changed):
            masterBinaryChanged = changed
            trigger(reason: reason, replies: reply.map { [$0] } ?? [], masterBinaryChanged: changed)
        case .canaryTrigger(let reason, let request, let reply, let changed):
            masterBinaryChanged = changed
            trigger(reason: reason, replies: reply.map { [$0] } ?? [], masterBinaryChanged: changed, canary: request)
        case .endCanary(let promote, let reply):
            endCanaryByHand(promote: promote, reply: reply, now: now)
        case .launched(let plan):
            launched(plan)
        case .launchFailed(let reason):
            if case .upgrading(let attempt) = phase, attempt.plan == nil { finishAttempt(.failed(reason: reason)) }
        case .spawned(let number, let pid, let listeners, let hasInbox):
            spawned(number, pid: pid, listeners: listeners, hasInbox: hasInbox, now: now)
        case .spawnFailed(let number, let reason):
            guard case .upgrading(let attempt) = phase, attempt.generation == nil, let plan = attempt.plan else { break }
            finishAttempt(.failed(reason: "generation \(number) (version \(Generation.versionLabel(plan.version))): \(reason)"))
        case .notified(let pid, let message):
            notified(pid: pid, message, now: now)
        case .exited(let pid, let status):
            exited(pid: pid, status: status, now: now)
        case .timeout(let timer):
            timedOut(timer, now: now)
        case .reexecRequested(let reason, let reply):
            requestReexec(reason: reason, replies: reply.map { [$0] } ?? [])
        case .reexecChecked(let result):
            reexecChecked(result)
        case .execNow:
            execNow()
        case .execFailed(let reason):
            execFailed(reason)
        case .shutdown:
            shutdown(now: now)
        }
        return actions
    }

    // MARK: Triggers and attempts

    private mutating func trigger(reason: String, replies: [ReplyToken], masterBinaryChanged changed: Bool, canary: CanaryRequest? = nil) {
        switch phase {
        case .shuttingDown:
            for reply in replies { actions.append(.reply(reply, .upgrade(.failed(reason: "the master is shutting down")))) }
        case .upgrading(var attempt):
            attempt.followUp = Self.adding(reason, replies, changed, canary, to: attempt.followUp)
            phase = .upgrading(attempt)
            log(.info, "upgrade requested (\(reason)) while one is running: it will follow")
        case .canary(var trial):
            trial.attempt.followUp = Self.adding(reason, replies, changed, canary, to: trial.attempt.followUp)
            phase = .canary(trial)
            log(.info, "upgrade requested (\(reason)) during a canary window: it will follow the verdict")
        case .reexecuting(var reexec):
            reexec.followUp = Self.adding(reason, replies, changed, canary, to: reexec.followUp)
            phase = .reexecuting(reexec)
            log(.info, "upgrade requested (\(reason)) while the master re-executes: it will follow")
        case .idle:
            if settings.reexecMasterOnUpgrade && changed && canary == nil {
                log(.notice, "upgrade (\(reason)): the master's own binary \(masterPath) changed on disk; re-executing the master, which then upgrades the workers (reexecMasterOnUpgrade)")
                startReexec(reason: reason, replies: replies, followUp: nil)
            } else {
                startAttempt(.upgrade(reason: reason, announced: false), replies: replies, followUp: nil, canary: canary)
            }
        }
    }

    private static func adding(_ reason: String, _ replies: [ReplyToken], _ changed: Bool, _ canary: CanaryRequest?,
                               to followUp: FollowUp?) -> FollowUp {
        var next = followUp ?? FollowUp()
        next.reasons.append(reason)
        next.replies += replies
        next.masterBinaryChanged = next.masterBinaryChanged || changed
        next.canary = canary ?? next.canary
        return next
    }

    /// "SIGHUP (×3), baton reload": a storm of triggers reads as one line.
    static func summary(of reasons: [String]) -> String {
        var order: [String] = []
        var counts: [String: Int] = [:]
        for reason in reasons {
            if counts[reason] == nil { order.append(reason) }
            counts[reason, default: 0] += 1
        }
        return order.map { counts[$0]! > 1 ? "\($0) (×\(counts[$0]!))" : $0 }.joined(separator: ", ")
    }

    private mutating func startAttempt(_ kind: Attempt.Kind, replies: [ReplyToken], followUp: FollowUp?, canary: CanaryRequest? = nil) {
        var attempt = Attempt(kind: kind, replies: replies, followUp: followUp, canaryRequest: canary)
        switch kind {
        case .start, .upgrade:
            if case .upgrade(let why, false) = kind, currentPlan != nil { actions.append(.tellSystemd(.reloading("upgrading (\(why))"))) }
            phase = .upgrading(attempt)
            actions.append(.absorbPendingConfigChanges(reason: attempt.reason))
            actions.append(.launch)
        case .restart(let plan), .rollback(let plan):
            actions.append(.count(attempt.reason == "restart" ? .restart : .rollback))
            attempt.plan = plan
            phase = .upgrading(attempt)
            actions.append(.spawn(generation: nextNumber, plan: plan))
        }
    }

    private mutating func launched(_ launched: LaunchPlan) {
        guard case .upgrading(var attempt) = phase, attempt.plan == nil else { return }
        var plan = launched
        plan.canary = nil  // a setting of this upgrade, not of the release (a restart is no canary)
        if let current = currentPlan { log(.notice, "upgrade (\(attempt.reason)): \(Self.changes(from: current, to: plan))") }
        attempt.plan = plan
        if attempt.countsAsUpgrade, attempt.canaryRequest != nil || launched.canary != nil {
            attempt.canary = attempt.canaryRequest.map { $0.applied(to: launched.canary) } ?? launched.canary
        }
        phase = .upgrading(attempt)
        if let canary = attempt.canary {
            if let refusal = canaryRefusal(canary, plan: plan) { return finishAttempt(.failed(reason: "canary refused: \(refusal)")) }
            actions.append(.spawnCanary(generation: nextNumber, plan: plan))
        } else {
            actions.append(.spawn(generation: nextNumber, plan: plan))
        }
    }

    /// Why a canary of `plan` cannot run now; nil when it can.
    private func canaryRefusal(_ canary: CanarySettings, plan: LaunchPlan) -> String? {
        if let problem = canary.problem { return problem }
        let serving = generations.filter { $0.state == .serving }
        guard let baseline = serving.last else { return "no generation serves: there is nothing to compare a canary with" }
        // The canary only gets what the serving generation accepts: a listener it alone would
        // have would not be served until it is promoted.
        if let listen = plan.listen, listen != currentPlan?.listen {
            return "the release listens elsewhere (\(listen.map(\.description).joined(separator: ", ")), now \((currentPlan?.listen ?? []).map(\.description).joined(separator: ", "))): a canary shares the serving generation's listeners; deploy the change of address without a canary"
        }
        guard baseline.followsCanaryOrders, baseline.takesConnections else {
            return "\(baseline.label) cannot pass a share of its traffic to a canary (it did not say BATON_CANARY=1 when ready: a worker in another language or an older release); upgrade without a canary"
        }
        return nil
    }

    private mutating func spawned(_ number: Int, pid: Int32, listeners: [Listener], hasInbox: Bool, now: ContinuousClock.Instant) {
        guard case .upgrading(var attempt) = phase, attempt.generation == nil, let plan = attempt.plan, number == nextNumber else {
            // Not what was asked for (cannot happen while the loop feeds results at once): a
            // process the master cannot account for is stopped rather than left behind.
            log(.error, "generation \(number) (pid \(pid)) was spawned outside an upgrade; stopping it")
            actions.append(.signal(pid: pid, .kill))
            return
        }
        nextNumber += 1
        let generation = Generation(number: number, pid: pid, version: plan.version, state: .starting, startedAt: now,
                                    plan: plan, listeners: listeners, hasInbox: hasInbox)
        generations.append(generation)
        attempt.generation = number
        phase = .upgrading(attempt)
        log(.info, "\(generation.label) starting (\(attempt.reason)): \(plan.executable)")
        actions.append(.startTimer(.ready(generation: number), after: settings.readyTimeout))
        // The generations serving now drain when this one takes over: the oldest drains are
        // hurried while it starts, so that they have made room by then (a canary's baseline
        // drains only if the canary is promoted, after its window).
        if attempt.canary == nil { hurryOldestDrains(incoming: generations.filter { $0.state == .serving }.count) }
        if let delay = settings.readyAfterUptime { actions.append(.startTimer(.uptime(generation: number), after: delay)) }
    }

    /// Ends the attempt (when `generation` is its own, or for a failure before it spawned),
    /// tells whoever asked, and starts the follow-up.
    private mutating func finishAttempt(_ result: UpgradeOutcome, generation: Int? = nil, canaryVerdict: String? = nil) {
        var replies: [ReplyToken] = []
        var followUp: FollowUp?
        if case .upgrading(let attempt) = phase, attempt.generation == generation {
            if attempt.countsAsUpgrade {
                if case .succeeded = result { actions.append(.count(.upgrade(succeeded: true))) } else { actions.append(.count(.upgrade(succeeded: false))) }
            }
            replies = attempt.replies
            followUp = attempt.followUp
            phase = .idle
        }
        var outcome = result
        switch result {
        case .succeeded:
            log(.info, "\(outcome)")
        case .failed(let reason):
            outcome = .failed(reason: reason + servingSummary)
            log(.error, "\(outcome)")
        }
        for reply in replies { actions.append(.reply(reply, canaryVerdict.map { .canary(verdict: $0, outcome) } ?? .upgrade(outcome))) }
        lastUpgrade = outcome
        closeUnusedListeners()
        if phase != .shuttingDown, currentPlan != nil { actions.append(.tellSystemd(.ready("\(outcome)"))) }
        if case .succeeded = outcome, masterBinaryChanged {
            log(.notice, "the master's own binary \(masterPath) changed on disk since it started; send SIGUSR2 or run `baton reload --master` to run the new one")
        }
        if case .failed = outcome, !generations.contains(where: { $0.state == .serving }) { scheduleRestart() }
        if let followUp { startFollowUp(followUp) }
        reportReleasesInUse()
    }

    private mutating func startFollowUp(_ followUp: FollowUp) {
        guard phase == .idle else {
            for reply in followUp.replies { actions.append(.reply(reply, .upgrade(.failed(reason: "the master is shutting down")))) }
            return
        }
        trigger(reason: "follow-up of \(Self.summary(of: followUp.reasons))", replies: followUp.replies,
                masterBinaryChanged: followUp.masterBinaryChanged, canary: followUp.canary)
    }

    // MARK: Readiness

    private mutating func notified(pid: Int32, _ message: NotifyMessage, now: ContinuousClock.Instant) {
        guard let index = generations.firstIndex(where: { $0.pid == pid }) else {
            log(.debug, "ignoring notify message from pid \(pid), not a worker: \(message.text)")
            return
        }
        if let status = message.status {
            generations[index].status = status
            log(.debug, "\(generations[index].label) status: \(status)")
        }
        if let connections = message.connections { generations[index].connections = connections }
        if let stats = message.stats {
            generations[index].stats = stats
            checkCanaryErrors(now: now)
        }
        guard message.isReady, generations[index].state == .starting, generations[index].readyAt == nil else { return }
        generations[index].followsCanaryOrders = message.followsCanaryOrders
        generations[index].resumes = message.resumes
        becameReady(index, takesConnections: message.takesConnections, now: now)
    }

    private mutating func becameReady(_ index: Int, takesConnections: Bool, now: ContinuousClock.Instant) {
        generations[index].readyAt = now
        generations[index].takesConnections = takesConnections
        let ready = generations[index]
        actions.append(.count(.ready(after: ready.startedAt.duration(to: now))))
        consecutiveFailures = 0
        if case .upgrading(let attempt) = phase, attempt.generation == ready.number, let canary = attempt.canary {
            generations[index].state = .serving
            return startTrial(index, attempt: attempt, settings: canary, now: now)
        }
        let incoming = generations.filter { $0.state == .serving }.count
        let draining = generations.filter { $0.state == .draining }
        guard draining.count + incoming > settings.maxDrainingGenerations, phase != .shuttingDown else {
            generations[index].state = .serving
            return takeOver(index, now: now)
        }
        // Taking over now would make more generations drain than the bound allows: wait (still
        // `starting`, the old generation serving) until the hurried drains have exited.
        hurryOldestDrains(incoming: incoming)
        let hurried = draining.filter(\.hurried).map { "generation \($0.number)" }
        let waitsFor = hurried.isEmpty ? "a draining generation has" : hurried.joined(separator: " and ") + (hurried.count > 1 ? " have" : " has")
        // Not "ready in": that line, which tools count, comes once, at the take-over.
        log(.info, "\(ready.label) is ready (after \(ready.startedAt.duration(to: now).shortDescription)); it takes over once \(waitsFor) exited (at most \(settings.maxDrainingGenerations) generations drain at once; it waits \(settings.roomWait.shortDescription) at most)")
        actions.append(.startTimer(.room(generation: ready.number), after: settings.roomWait))
    }

    /// A generation that waits for room takes over once there is room (a draining generation
    /// exited), when none serves any more (nobody would accept), or when its wait is over
    /// (`overdue`), whatever the count.
    private mutating func takeOverIfRoom(overdue: Int? = nil, now: ContinuousClock.Instant) {
        guard phase != .shuttingDown,
              let index = generations.firstIndex(where: \.waitsForRoom) else { return }
        let incoming = generations.filter { $0.state == .serving }.count
        let draining = generations.filter { $0.state == .draining }.count
        if incoming > 0, draining + incoming > settings.maxDrainingGenerations {
            guard overdue == generations[index].number else { return }
            log(.warning, "\(generations[index].label) takes over although \(draining) generations are still draining after \(settings.roomWait.shortDescription) (at most \(settings.maxDrainingGenerations) should): a hurried one does not exit")
        }
        generations[index].state = .serving
        takeOver(index, now: now)
    }

    /// Generation `index`, ready, takes all the traffic: the generations serving until now drain
    /// (handing their keep-alive connections to it when both can), and the attempt succeeds.
    private mutating func takeOver(_ index: Int, now: ContinuousClock.Instant, canaryVerdict: String? = nil) {
        let ready = generations[index]
        let readyAfter = ready.startedAt.duration(to: ready.readyAt ?? now)
        // Probation (a crash soon after taking over rolls back) counts from now: a promoted
        // canary has only served its share so far.
        generations[index].readyAt = now
        // Before any drain begins: a socket only a drainer still uses is closed in the master
        // first (see `beginDrain`), which needs the new listeners to be the current ones.
        actions.append(.makeListenersCurrent(ready.listeners))
        var draining: [Int] = []
        let drainingBefore = generations.indices.filter { generations[$0].state == .draining }
        for other in generations.indices where other != index && generations[other].state == .serving {
            beginDrain(other, successor: index, now: now)
            draining.append(generations[other].number)
        }
        // Generations still handing connections to one that drains now hand the rest here
        // directly: passed through the generation in between, each would move twice.
        if ready.takesConnections, ready.hasInbox {
            for other in drainingBefore where generations[other].handsOverTo != nil {
                retargetHandoff(other, to: index, now: now)
            }
        }
        // The master keeps its copy of the inbox while this generation serves (a canary rolled
        // back hands its connections back there) and closes it when this one drains.
        if currentPlan != ready.plan {
            previousPlan = currentPlan
            currentPlan = ready.plan
        }
        finishAttempt(.succeeded(generation: ready.number, pid: ready.pid, version: ready.version,
                                 readyAfter: readyAfter, draining: draining),
                      generation: ready.number, canaryVerdict: canaryVerdict)
    }

    // MARK: Canary

    /// The canary is ready: it serves the share the serving generation passes it until its window
    /// ends. A worker that did not start as a canary (it may be accepting already) is drained.
    private mutating func startTrial(_ index: Int, attempt: Attempt, settings canarySettings: CanarySettings, now: ContinuousClock.Instant) {
        let canary = generations[index]
        guard canary.followsCanaryOrders, canary.takesConnections else {
            beginDrain(index, now: now)
            return finishAttempt(.failed(reason: "canary refused: \(canary.label) did not start as a canary (no BATON_CANARY=1 with READY=1: a worker in another language or an older release); drained it"),
                                 generation: canary.number)
        }
        guard let baselineIndex = generations.lastIndex(where: { $0.state == .serving && $0.number != canary.number }),
              generations[baselineIndex].followsCanaryOrders else {
            log(.warning, "canary: the generation it was to be compared with is gone; \(canary.label) takes all the traffic without a trial")
            actions.append(.sendAccept(generation: canary.number))
            return takeOver(index, now: now, canaryVerdict: "not judged: the serving generation was gone when the canary became ready")
        }
        let baseline = generations[baselineIndex]
        generations[index].state = .canary
        phase = .canary(Trial(attempt: attempt, settings: canarySettings, canary: canary.number, baseline: baseline.number, startedAt: now,
                              canaryAtStart: canary.stats, baselineAtStart: baseline.stats))
        actions.append(.sendShare(generation: baseline.number, percent: canarySettings.percent, to: canary.number))
        actions.append(.startTimer(.canaryWindow(generation: canary.number), after: canarySettings.window))
        log(.notice, "canary: \(canary.label) ready in \(canary.startedAt.duration(to: now).shortDescription); it takes \(canarySettings.percent)% of the traffic from \(baseline.label) for \(canarySettings.window.shortDescription), then is judged")
    }

    /// The counts of the window so far: (canary, baseline).
    private func trialCounts(_ trial: Trial) -> (canary: RequestStats, baseline: RequestStats)? {
        guard let canary = generations.first(where: { $0.number == trial.canary }),
              let baseline = generations.first(where: { $0.number == trial.baseline }) else { return nil }
        return (canary.stats.since(trial.canaryAtStart), baseline.stats.since(trial.baselineAtStart))
    }

    /// New counts came: a canary failing the error rule is rolled back before its window ends.
    private mutating func checkCanaryErrors(now: ContinuousClock.Instant) {
        guard case .canary(let trial) = phase, let counts = trialCounts(trial),
              let failure = CanaryJudge.errorFailure(canary: counts.canary, baseline: counts.baseline, settings: trial.settings,
                                                     confident: true) else { return }
        let after = trial.startedAt.duration(to: now).shortDescription
        rollBack(trial, verdict: "\(failure) after \(after) of its \(trial.settings.window.shortDescription) window (\(CanaryJudge.figures(canary: counts.canary, baseline: counts.baseline)))", now: now)
    }

    private mutating func judge(now: ContinuousClock.Instant) {
        guard case .canary(let trial) = phase, let counts = trialCounts(trial) else { return }
        let verdict = CanaryJudge.judge(canary: counts.canary, baseline: counts.baseline, settings: trial.settings)
        if verdict.passed { promote(trial, verdict: verdict.description, now: now) } else { rollBack(trial, verdict: verdict.description, now: now) }
    }

    private mutating func endCanaryByHand(promote byHand: Bool, reply: ReplyToken?, now: ContinuousClock.Instant) {
        guard case .canary(let trial) = phase else {
            if let reply { actions.append(.reply(reply, .upgrade(.failed(reason: "no canary is running")))) }
            return
        }
        let verdict = "by hand (\(byHand ? "baton promote" : "baton abort")) after \(trial.startedAt.duration(to: now).shortDescription)"
            + (trialCounts(trial).map { " (\(CanaryJudge.figures(canary: $0.canary, baseline: $0.baseline)))" } ?? "")
        var ended = trial
        if let reply { ended.attempt.replies.append(reply) }
        if byHand { promote(ended, verdict: verdict, now: now) } else { rollBack(ended, verdict: verdict, now: now) }
    }

    /// The canary takes all the traffic: it accepts, and the baseline drains into it.
    private mutating func promote(_ trial: Trial, verdict: String, now: ContinuousClock.Instant) {
        guard let index = generations.firstIndex(where: { $0.number == trial.canary }) else { return }
        lastCanary = "promoted: \(verdict)"
        log(.notice, "canary \(generations[index].label) \(lastCanary!)")
        actions.append(.count(.canary("promoted")))
        phase = .upgrading(trial.attempt)
        generations[index].state = .serving
        actions.append(.sendAccept(generation: trial.canary))
        takeOver(index, now: now, canaryVerdict: "promoted: \(verdict)")
    }

    /// The canary drains, handing its connections back to the baseline, which keeps serving.
    private mutating func rollBack(_ trial: Trial, verdict: String, now: ContinuousClock.Instant) {
        lastCanary = "rolled back: \(verdict)"
        actions.append(.count(.canary("rolled_back")))
        phase = .upgrading(trial.attempt)
        actions.append(.sendShare(generation: trial.baseline, percent: 0, to: nil))
        let baseline = generations.firstIndex(where: { $0.number == trial.baseline && $0.state == .serving })
        if let index = generations.firstIndex(where: { $0.number == trial.canary && $0.state == .canary }) {
            beginDrain(index, successor: baseline, now: now)
        }
        finishAttempt(.failed(reason: "canary rolled back: \(verdict)"), generation: trial.canary, canaryVerdict: "rolled back: \(verdict)")
    }

    // MARK: Draining, exits, timers

    /// Sends generation `index` its drain orders and SIGTERM. When `successor` (the generation
    /// that just became ready) takes connections and the drainer can hand them over, the orders
    /// name the successor's inbox.
    private mutating func beginDrain(_ index: Int, successor: Int? = nil, now: ContinuousClock.Instant) {
        generations[index].state = .draining
        generations[index].drainStartedAt = now
        // First what the worker must know to drain well: which queues others go on serving.
        let shared = sharedListeners(of: generations[index])
        // A socket it is the last to use (an old port) it takes the queue of and closes: the
        // master lets go of its copy first, or connections would queue there after the drainer
        // took the last ones, and be reset instead of refused when the master closed it.
        if shared.count < generations[index].listeners.count { closeUnusedListeners() }
        var handoffTo: Int?
        var keepAlives = ""
        if let successor {
            let (old, new) = (generations[index], generations[successor])
            if !new.takesConnections || !new.hasInbox {
                keepAlives = "; \(new.label) does not take connections over (no BATON_HANDOFF=1: a worker in another language or an older release), so keep-alive connections are closed gracefully"
            } else if !old.takesConnections {
                keepAlives = "; it cannot hand connections over (an older release or another language), so keep-alive connections are closed gracefully"
            } else {
                handoffTo = new.number
                keepAlives = "; idle keep-alive connections go to generation \(new.number)"
            }
        }
        generations[index].handsOverTo = handoffTo
        generations[index].drainsFor = successor.map { generations[$0].number }
        let generation = generations[index]
        actions.append(.sendDrainOrders(generation: generation.number, shared: shared, handoffTo: handoffTo,
                                        deadline: DrainOrders.deadline(forDrainTimeout: settings.drainTimeout)))
        // A generation whose drain was called off had its SIGTERM then: the orders alone start
        // this drain (its graceful shutdown is under way, and a second SIGTERM is not its to take).
        if !generation.resumed { actions.append(.signal(pid: generation.pid, .terminate)) }
        // From now on only the generations it replaced may send it connections (they hold their
        // own copies of its inbox): once they are done, its inbox reports that no sender is left,
        // which a draining worker waits for before it exits with connections still queued there.
        if generation.hasInbox {
            generations[index].hasInbox = false
            actions.append(.closeInbox(generation: generation.number))
        }
        log(.info, "\(generation.label) draining (\(generation.resumed ? "drain orders" : "SIGTERM"))\(keepAlives)")
        actions.append(.startTimer(.drain(generation: generation.number), after: settings.drainTimeout))
        hurryOldestDrains(incoming: 0)
    }

    /// Long-lived connections (WebSockets) keep a draining generation alive for its whole close
    /// window: with upgrades in quick succession they would pile up. When the drains under way
    /// and `incoming` more (the generations serving now, when an upgrade takes over) would
    /// exceed `maxDrainingGenerations`, the oldest drains are hurried to their closes. Their
    /// drain timeout still ends each one.
    private mutating func hurryOldestDrains(incoming: Int) {
        let draining = generations.indices.filter { generations[$0].state == .draining }
            .sorted { generations[$0].number < generations[$1].number }
        let total = draining.count + incoming
        guard total > settings.maxDrainingGenerations else { return }
        for index in draining.prefix(total - settings.maxDrainingGenerations) where !generations[index].hurried {
            generations[index].hurried = true
            actions.append(.sendHurry(generation: generations[index].number))
            let why = incoming == 0 ? "\(draining.count) generations draining" : "\(draining.count) generations draining and \(incoming) to drain at the next take-over"
            log(.notice, "\(generations[index].label) hurried: \(why), at most \(settings.maxDrainingGenerations) may (its WebSockets close within a fifth of their window, not over all of it)")
        }
    }

    /// New orders for draining generation `index`, naming `successor`'s inbox; a worker that
    /// reads its control channel while it drains hands the rest of its connections there.
    private mutating func retargetHandoff(_ index: Int, to successor: Int, now: ContinuousClock.Instant) {
        let generation = generations[index]
        let shared = sharedListeners(of: generation)
        let elapsed = (generation.drainStartedAt ?? now).duration(to: now)
        let deadline = max(.zero, DrainOrders.deadline(forDrainTimeout: settings.drainTimeout) - elapsed)
        generations[index].handsOverTo = generations[successor].number
        generations[index].drainsFor = generations[successor].number
        actions.append(.sendDrainOrders(generation: generation.number, shared: shared, handoffTo: generations[successor].number,
                                        deadline: deadline))
        log(.info, "\(generation.label) hands the rest of its keep-alive connections to generation \(generations[successor].number), not to the generation it drained for")
    }

    private mutating func timedOut(_ timer: Timer, now: ContinuousClock.Instant) {
        switch timer {
        case .ready(let number):
            guard let index = generations.firstIndex(where: { $0.number == number && $0.state == .starting && $0.readyAt == nil }) else { return }
            let generation = generations[index]
            actions.append(.signal(pid: generation.pid, .kill))
            generations[index].state = .abandoned
            finishAttempt(.failed(reason: "\(generation.label) was not ready within \(settings.readyTimeout.shortDescription); killed it"),
                          generation: number)
        case .uptime(let number):
            guard let index = generations.firstIndex(where: { $0.number == number && $0.state == .starting && $0.readyAt == nil }) else { return }
            generations[index].status = "up for \((settings.readyAfterUptime ?? .zero).shortDescription)"
            becameReady(index, takesConnections: false, now: now)
        case .drain(let number):
            guard let generation = generations.first(where: { $0.number == number && $0.state == .draining }) else { return }
            log(.warning, "\(generation.label) did not drain within \(settings.drainTimeout.shortDescription); sending SIGKILL")
            actions.append(.signal(pid: generation.pid, .kill))
        case .restart:
            restartScheduled = false
            if phase == .idle, !generations.contains(where: { $0.state == .serving }), let plan = currentPlan {
                startAttempt(.restart(plan), replies: [], followUp: nil)
            }
        case .execNow:
            execNow()
        case .canaryWindow(let number):
            guard case .canary(let trial) = phase, trial.canary == number else { return }
            judge(now: now)
        case .room(let number):
            takeOverIfRoom(overdue: number, now: now)
        }
    }

    private mutating func exited(pid: Int32, status: ExitStatus, now: ContinuousClock.Instant) {
        guard let index = generations.firstIndex(where: { $0.pid == pid }) else { return }
        let generation = generations.remove(at: index)
        actions.append(.forget(generation: generation.number))
        closeUnusedListeners()
        switch generation.state {
        case .starting:
            let when = generation.readyAt == nil ? "at start" : "while it waited, ready, to take over"
            finishAttempt(.failed(reason: "\(generation.label) exited \(when) with \(status)"), generation: generation.number)
        case .abandoned:
            log(.debug, "\(generation.label) reaped after being killed (\(status))")
        case .draining:
            let took = generation.drainStartedAt.map { $0.duration(to: now) }
            if let took { actions.append(.count(.drained(after: took))) }
            log(.info, "\(generation.label) drained in \(took?.shortDescription ?? "?") (\(status))")
            takeOverIfRoom(now: now)
        case .canary:
            guard case .canary(let trial) = phase, trial.canary == generation.number else { break }
            rollBack(trial, verdict: "\(generation.label) exited during its window with \(status)", now: now)
        case .serving:
            if case .canary(let trial) = phase, trial.baseline == generation.number,
               let canary = generations.firstIndex(where: { $0.number == trial.canary }) {
                log(.error, "\(generation.label) exited unexpectedly with \(status) during a canary window; the canary, the only generation left, takes all the traffic")
                lastCanary = "promoted without a verdict: the serving generation exited during the window"
                actions.append(.count(.canary("promoted")))
                phase = .upgrading(trial.attempt)
                generations[canary].state = .serving
                actions.append(.sendAccept(generation: trial.canary))
                return takeOver(canary, now: now, canaryVerdict: lastCanary)
            }
            // A generation ready and waiting for room is the one to serve: it takes over now.
            if !generations.contains(where: { $0.state == .serving }), let held = generations.first(where: \.waitsForRoom) {
                log(.error, "\(generation.label) exited unexpectedly with \(status); \(held.label), ready and waiting to take over, takes over now")
                return takeOverIfRoom(now: now)
            }
            servingGenerationDied(generation, status: status, now: now)
        }
    }

    /// A generation that was serving died by itself: roll back if it had just taken over,
    /// otherwise restart its release, unless another generation serves or is starting.
    private mutating func servingGenerationDied(_ generation: Generation, status: ExitStatus, now: ContinuousClock.Instant) {
        var followUp: FollowUp?
        if case .reexecuting(let reexec) = phase {
            // The record would hand the next image a service without a worker: do not exec.
            followUp = reexec.followUp
            let why = "cancelled: \(generation.label) died during the re-execution"
            endReexec(reexec, metric: "failed", detail: why, note: why)
        }
        let uptime = generation.readyAt.map { $0.duration(to: now) } ?? .zero
        if let predecessor = resumableDrainer(for: generation) {
            callOffDrain(of: predecessor, after: generation, status: status, uptime: uptime)
            if let followUp { startFollowUp(followUp) }
            return
        }
        if phase == .idle, uptime < settings.probation, let previous = previousPlan, previous != generation.plan, generation.plan == currentPlan {
            log(.critical, "ROLLBACK: \(generation.label) died \(uptime.shortDescription) after taking over (\(status)), within the \(settings.probation.shortDescription) probation; starting the previous release (version \(Generation.versionLabel(previous.version))) again")
            previousPlan = nil
            currentPlan = previous
            startAttempt(.rollback(previous), replies: [], followUp: followUp)
            return
        }
        log(.error, "\(generation.label) exited unexpectedly with \(status)")
        restartIfNoneServes()
        if let followUp { startFollowUp(followUp) }
    }

    /// The generation that drains for `dead` (the newest, when several were retargeted to it), if
    /// it can be told to serve again: it said `BATON_RESUME=1` and serves the same listeners.
    private func resumableDrainer(for dead: Generation) -> Int? {
        guard phase != .shuttingDown else { return nil }
        return generations.indices
            .filter { generations[$0].state == .draining && generations[$0].drainsFor == dead.number && generations[$0].resumes }
            .filter { Set(generations[$0].listeners) == Set(dead.listeners) }
            .max { generations[$0].number < generations[$1].number }
    }

    /// Generation `index` drains for `dead`, which died: it stops draining, keeps the connections
    /// it still holds and accepts again (no moment without a generation accepting, no client
    /// moved twice). Within `dead`'s probation that is the rollback; after it, the current
    /// release is started again and takes over from it when ready.
    private mutating func callOffDrain(of index: Int, after dead: Generation, status: ExitStatus, uptime: Duration) {
        generations[index].state = .serving
        generations[index].drainStartedAt = nil
        generations[index].handsOverTo = nil
        generations[index].drainsFor = nil
        generations[index].resumed = true
        let resumed = generations[index]
        actions.append(.sendResume(generation: resumed.number))
        if phase == .idle, uptime < settings.probation, previousPlan == resumed.plan, dead.plan == currentPlan, resumed.plan != dead.plan {
            log(.critical, "ROLLBACK: \(dead.label) died \(uptime.shortDescription) after taking over (\(status)), within the \(settings.probation.shortDescription) probation; \(resumed.label), still draining, serves again with the connections it kept (nothing to start)")
            previousPlan = nil
            currentPlan = resumed.plan
            actions.append(.count(.rollback))
            actions.append(.makeListenersCurrent(resumed.listeners))
            actions.append(.tellSystemd(.ready("rolled back: \(resumed.label) serves again")))
            reportReleasesInUse()
            return
        }
        log(.error, "\(dead.label) exited unexpectedly with \(status); \(resumed.label), still draining, serves again with the connections it kept")
        if phase == .idle, let plan = currentPlan, plan != resumed.plan {
            log(.notice, "starting the current release (version \(Generation.versionLabel(plan.version))) again: it takes over from \(resumed.label) once ready")
            startAttempt(.restart(plan), replies: [], followUp: nil)
        }
    }

    private mutating func scheduleRestart() {
        guard phase != .shuttingDown, !restartScheduled, currentPlan != nil else { return }
        var delay = settings.restartBackoffFirst
        for _ in 0..<min(consecutiveFailures, 20) where delay < settings.restartBackoffMax { delay *= 2 }
        delay = min(delay, settings.restartBackoffMax)
        consecutiveFailures += 1
        restartScheduled = true
        log(.warning, "no generation is serving: starting one again in \(delay.shortDescription) (clients queue on the listener meanwhile)")
        actions.append(.startTimer(.restart, after: delay))
    }

    /// A draining generation has stopped accepting: a socket kept open for it alone would only
    /// queue connections nobody accepts (reset later, instead of refused now).
    private mutating func closeUnusedListeners() {
        actions.append(.closeUnusedListeners(inUse: acceptingListeners))
    }

    /// The listeners of the generations that accept (starting or serving), in table order.
    private var acceptingListeners: [Listener] {
        generations.filter { $0.state == .starting || $0.state == .serving }.flatMap(\.listeners)
    }

    /// Positions of `generation`'s listeners whose queue another generation, or systemd, goes on
    /// serving: a drainer leaves what is queued there.
    private func sharedListeners(of generation: Generation) -> Set<Int> {
        let accepting = Set(acceptingListeners)
        return Set(generation.listeners.indices.filter { settings.listenersFromSystemd || accepting.contains(generation.listeners[$0]) })
    }

    private mutating func reportReleasesInUse() {
        actions.append(.releasesInUse(Set((generations.map(\.plan) + [currentPlan, previousPlan].compactMap { $0 }).map(\.executable))))
    }

    // MARK: Re-executing the master

    private mutating func requestReexec(reason: String, replies: [ReplyToken]) {
        let refusal: String?
        switch phase {
        case .idle: refusal = nil
        case .shuttingDown: refusal = "the master is shutting down"
        case .reexecuting: refusal = "a master re-execution is already under way"
        case .canary(let trial): refusal = "a canary upgrade is running (generation \(trial.canary)); try again once it is promoted or rolled back"
        case .upgrading(let attempt):
            refusal = "an upgrade is running (\(attempt.generation.map { "generation \($0) starting" } ?? "staging the release")); try again once it has finished"
        }
        if let refusal {
            log(.error, "master re-execution (\(reason)) refused: \(refusal)")
            for reply in replies { actions.append(.reply(reply, .reexec(.refused(refusal)))) }
            return
        }
        startReexec(reason: reason, replies: replies, followUp: nil)
    }

    private mutating func startReexec(reason: String, replies: [ReplyToken], followUp: FollowUp?) {
        phase = .reexecuting(Reexec(reason: reason, replies: replies, followUp: followUp))
        log(.notice, "master re-execution (\(reason)): checking \(masterPath)")
        actions.append(.checkMasterImage)
    }

    private mutating func reexecChecked(_ result: CheckResult) {
        guard case .reexecuting(var reexec) = phase, !reexec.checked else { return }
        switch result {
        case .refused(let error):
            endReexec(reexec, metric: "refused", detail: error, note: "refused (\(reexec.reason)): \(error)")
            restartIfNoneServes()
            if let followUp = reexec.followUp { startFollowUp(followUp) }
        case .passed(let message):
            log(.info, message)
            reexec.checked = true
            let replies = reexec.replies
            reexec.replies = []
            phase = .reexecuting(reexec)
            if replies.isEmpty {
                execNow()
            } else {
                for reply in replies { actions.append(.reply(reply, .reexec(.accepted(message)))) }
                actions.append(.startTimer(.execNow, after: settings.execAnswerGrace))  // in case the answer is never delivered
            }
        }
    }

    private mutating func execNow() {
        guard case .reexecuting(var reexec) = phase, reexec.checked else { return }
        if let waiting = reexec.followUp {
            for reply in waiting.replies {
                actions.append(.reply(reply, .upgrade(.failed(reason: "superseded: the master re-executes itself now and then upgrades the workers (see `baton status`)"))))
            }
            reexec.followUp = nil
            phase = .reexecuting(reexec)
        }
        actions.append(.tellSystemd(.reloading("re-executing the master: \(masterPath)")))
        actions.append(.execMaster)
    }

    private mutating func execFailed(_ reason: String) {
        guard case .reexecuting(let reexec) = phase, reexec.checked else { return }
        endReexec(reexec, metric: "failed", detail: reason, note: "failed: \(reason)")
        actions.append(.tellSystemd(.ready("master re-execution failed: \(reason)")))
        restartIfNoneServes()
    }

    /// This image keeps running: answer who still waits, count it, say why.
    private mutating func endReexec(_ reexec: Reexec, metric: String, detail: String, note: String) {
        for reply in reexec.replies { actions.append(.reply(reply, .reexec(.refused(detail)))) }
        phase = .idle
        reexecFailures += 1
        lastReexec = note
        actions.append(.count(.reexec(metric)))
        log(.error, "master re-execution \(metric), this image keeps running: \(detail)")
    }

    private mutating func restartIfNoneServes() {
        if !generations.contains(where: { $0.state == .serving || $0.state == .starting }) { scheduleRestart() }
    }

    /// After a re-execution: manage the adopted generations as if this image had started them,
    /// then upgrade the workers so that they run the release this master now runs.
    private mutating func resume(lost: [Int32], execution: Int, image: String, now: ContinuousClock.Instant) {
        actions.append(.count(.reexec("succeeded")))
        lastReexec = "re-executed \(masterPath) (execution \(execution))"
        log(.notice, "master re-executed in place: \(image); took over \(generations.count) generation(s): \(generations.map { "\($0.number) \($0.state.rawValue)" }.joined(separator: ", "))")
        for pid in lost {
            guard let index = generations.firstIndex(where: { $0.pid == pid }) else { continue }
            let generation = generations.remove(at: index)
            log(.error, "\(generation.label) cannot be watched after the re-execution; forgetting it")
            actions.append(.forget(generation: generation.number))
        }
        for generation in generations where generation.state == .draining {
            let left = max(.zero, settings.drainTimeout - (generation.drainStartedAt ?? now).duration(to: now))
            actions.append(.startTimer(.drain(generation: generation.number), after: left))
        }
        startAttempt(.upgrade(reason: "master re-executed", announced: true), replies: [], followUp: nil)
    }

    /// After the death of master `from`: manage its generations as if this master had started
    /// them. Nothing is restarted: they serve on. An upgrade or canary that was under way is
    /// abandoned (its new generation is stopped), and says so: run it again.
    private mutating func adopt(lost: [Int32], lostGenerations: [Int], from: Int32, now: ContinuousClock.Instant) {
        adoptions += 1
        actions.append(.count(.adoption))
        let lostPIDs = generations.filter { lost.contains($0.pid) }.map(\.number)
        for pid in lost {
            guard let index = generations.firstIndex(where: { $0.pid == pid }) else { continue }
            let generation = generations.remove(at: index)
            log(.error, "\(generation.label) cannot be watched after the adoption; forgetting it")
            actions.append(.forget(generation: generation.number))
        }
        let missing = (lostGenerations + lostPIDs).sorted()
        let summary = generations.map { "\($0.number) \($0.state.rawValue)" }.joined(separator: ", ")
        lastAdoption = "adopted \(generations.count) generation(s) from master pid \(from)\(missing.isEmpty ? "" : ", lost \(missing.map(String.init).joined(separator: ", "))")"
        log(.notice, "\(lastAdoption!) (\(summary)); adoption \(adoptions) of this service")
        for index in generations.indices {
            actions.append(.announceMaster(generation: generations[index].number))
            switch generations[index].state {
            case .draining:
                let left = max(.zero, settings.drainTimeout - (generations[index].drainStartedAt ?? now).duration(to: now))
                actions.append(.startTimer(.drain(generation: generations[index].number), after: left))
            case .starting, .canary:
                // The upgrade it belonged to died with its master: stop it, keep what served.
                log(.warning, "\(generations[index].label) was \(generations[index].state.rawValue) for an upgrade the dead master ran; stopping it (run the upgrade again)")
                generations[index].state = .draining
                beginDrain(index, now: now)
            case .serving, .abandoned:
                break
            }
        }
        // A master killed during its stop (SIGTERM, `baton stop`) was asked to stop: whoever
        // started this one again (the keeper, a supervisor loop) does not cancel that.
        if adoptedWhileStopping {
            log(.notice, "master pid \(from) died while stopping: finishing the stop")
            return shutdown(now: now)
        }
        if let serving = generations.last(where: { $0.state == .serving }) {
            actions.append(.makeListenersCurrent(serving.listeners))
            actions.append(.tellSystemd(.ready("\(lastAdoption!); \(serving.label) serves")))
        }
        restartIfNoneServes()
    }

    // MARK: Shutdown

    private mutating func shutdown(now: ContinuousClock.Instant) {
        var waiting: [ReplyToken] = []
        switch phase {
        case .shuttingDown: return
        case .idle: break
        case .upgrading(let attempt): waiting = attempt.replies + (attempt.followUp?.replies ?? [])
        case .canary(let trial): waiting = trial.attempt.replies + (trial.attempt.followUp?.replies ?? [])
        case .reexecuting(let reexec):
            for reply in reexec.replies { actions.append(.reply(reply, .reexec(.refused("the master is shutting down")))) }
            waiting = reexec.followUp?.replies ?? []
        }
        phase = .shuttingDown
        log(.info, "shutting down: draining \(generations.count) generation(s)")
        actions.append(.tellSystemd(.stopping("draining \(generations.count) generation(s)")))
        for reply in waiting { actions.append(.reply(reply, .upgrade(.failed(reason: "the master is shutting down")))) }
        let stopping = generations.indices.filter { generations[$0].state != .draining && generations[$0].state != .abandoned }
        // All of them first: none may be told that another (about to stop too) serves its queue.
        for index in stopping { generations[index].state = .draining }
        // Nothing will accept on the master's sockets again: closed before any drain begins, late
        // clients are refused instead of queued where nobody takes them, and reset when the
        // master exits; the last generation takes what is queued. Systemd keeps its own sockets.
        if !settings.listenersFromSystemd { actions.append(.closeListeners) }
        for index in stopping { beginDrain(index, now: now) }
    }

    // MARK: Helpers

    private var servingSummary: String {
        let serving = generations.filter { $0.state == .serving }
        return serving.isEmpty ? "; no generation is serving" : "; \(serving.map(\.label).joined(separator: ", ")) keeps serving"
    }

    private mutating func log(_ level: Logger.Level, _ message: String) { actions.append(.log(level, message)) }

    /// What differs between two plans, for the log.
    static func changes(from old: LaunchPlan, to new: LaunchPlan) -> String {
        var changes: [String] = []
        if old.version != new.version { changes.append("version \(old.version) → \(new.version)") }
        if old.executable != new.executable { changes.append("executable \(old.executable) → \(new.executable)") }
        if let listen = new.listen, listen != old.listen {
            changes.append("listen \((old.listen ?? []).map(\.description).joined(separator: ", ")) → \(listen.map(\.description).joined(separator: ", "))")
        }
        if old.arguments != new.arguments { changes.append("arguments changed") }
        if old.environment != new.environment { changes.append("environment changed") }
        return changes.isEmpty ? "same release and settings as the serving generation (restarting it)" : changes.joined(separator: "; ")
    }
}
