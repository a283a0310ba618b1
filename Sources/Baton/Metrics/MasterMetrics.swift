import NIOConcurrencyHelpers
import Prometheus

/// The master's metrics in Prometheus text format (`baton metrics`, and optionally an HTTP
/// endpoint of their own, see ``MetricsEndpoint``).
///
/// Counters survive a re-execution of the master (their totals travel in the hand-over record);
/// histograms start again empty, which Prometheus treats as any counter reset.
final class MasterMetrics: Sendable {
    /// Totals kept beside the counters so that a re-execution can carry them over.
    struct Totals: Codable, Equatable, Sendable {
        var upgradesSucceeded = 0
        var upgradesFailed = 0
        var rollbacks = 0
        var restarts = 0
        var reexecutionsSucceeded = 0
        var reexecutionsRefused = 0
        var reexecutionsFailed = 0
        /// Optional: records of older releases have none.
        var canariesPromoted: Int?
        var canariesRolledBack: Int?
        var adoptions: Int?
    }

    private let registry: PrometheusCollectorRegistry
    private let upgradesSucceeded: Counter
    private let upgradesFailed: Counter
    private let rollbacks: Counter
    private let restarts: Counter
    private let reexecutions: [String: Counter]
    private let canaries: [String: Counter]
    private let adoptions: Counter
    private let generations: [Generation.State: Gauge]
    private let timeToReady: DurationHistogram
    private let drainTime: DurationHistogram
    private let state = NIOLockedValueBox<(totals: Totals, serving: Gauge?, servingLabels: [String])>((Totals(), nil, []))
    /// `baton_open_connections` by generation and kind, for the generations alive.
    private let connections = NIOLockedValueBox<[ConnectionGaugeKey: Gauge]>([:])

    private struct ConnectionGaugeKey: Hashable {
        var generation: Int
        var state: String
        var kind: String
    }

    init() {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        let upgrades = "baton_upgrades_total"
        let upgradesHelp = "Upgrades (SIGHUP, watch.conf, baton reload) by outcome."
        upgradesSucceeded = registry.makeCounter(descriptor: .baton(upgrades, help: upgradesHelp), labels: [("outcome", "succeeded")])
        upgradesFailed = registry.makeCounter(descriptor: .baton(upgrades, help: upgradesHelp), labels: [("outcome", "failed")])
        rollbacks = registry.makeCounter(descriptor: .baton("baton_rollbacks_total", help: "Rollbacks to the previous release after a crash within the probation."))
        restarts = registry.makeCounter(descriptor: .baton("baton_worker_restarts_total", help: "Workers started again after no generation was serving."))
        reexecutions = Dictionary(uniqueKeysWithValues: ["succeeded", "refused", "failed"].map { outcome in
            (outcome, registry.makeCounter(descriptor: .baton("baton_master_reexecutions_total",
                                                              help: "Re-executions of the master's own binary in place, by outcome."),
                                           labels: [("outcome", outcome)]))
        })
        canaries = Dictionary(uniqueKeysWithValues: ["promoted", "rolled_back"].map { outcome in
            (outcome, registry.makeCounter(descriptor: .baton("baton_canaries_total",
                                                              help: "Canary upgrades by outcome (promoted, or rolled back on its errors, latency, a crash or by hand)."),
                                           labels: [("outcome", outcome)]))
        })
        adoptions = registry.makeCounter(descriptor: .baton("baton_adoptions_total",
                                                            help: "Masters started that took over the running workers of a master that died."))
        generations = Dictionary(uniqueKeysWithValues: [Generation.State.starting, .serving, .canary, .draining, .abandoned].map { state in
            (state, registry.makeGauge(descriptor: .baton("baton_generations", help: "Worker generations by state."), labels: [("state", state.rawValue)]))
        })
        let buckets: [Duration] = [.milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
                                   .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30), .seconds(60)]
        timeToReady = registry.makeDurationHistogram(descriptor: .baton("baton_time_to_ready_seconds", help: "From spawning a generation to its READY=1."),
                                                     buckets: buckets)
        drainTime = registry.makeDurationHistogram(descriptor: .baton("baton_drain_seconds", help: "From SIGTERM to the exit of a draining generation."),
                                                   buckets: buckets)
    }

    /// The totals so far (for the hand-over record).
    var totals: Totals { state.withLockedValue { $0.totals } }

    /// Continues from the totals a previous image of this master counted.
    func resume(from totals: Totals) {
        state.withLockedValue { $0.totals = totals }
        upgradesSucceeded.increment(by: Int64(totals.upgradesSucceeded))
        upgradesFailed.increment(by: Int64(totals.upgradesFailed))
        rollbacks.increment(by: Int64(totals.rollbacks))
        restarts.increment(by: Int64(totals.restarts))
        reexecutions["succeeded"]?.increment(by: Int64(totals.reexecutionsSucceeded))
        reexecutions["refused"]?.increment(by: Int64(totals.reexecutionsRefused))
        reexecutions["failed"]?.increment(by: Int64(totals.reexecutionsFailed))
        canaries["promoted"]?.increment(by: Int64(totals.canariesPromoted ?? 0))
        canaries["rolled_back"]?.increment(by: Int64(totals.canariesRolledBack ?? 0))
        adoptions.increment(by: Int64(totals.adoptions ?? 0))
    }

    /// `outcome`: "promoted" or "rolled_back".
    func canaryEnded(_ outcome: String) {
        canaries[outcome]?.increment()
        state.withLockedValue {
            if outcome == "promoted" {
                $0.totals.canariesPromoted = ($0.totals.canariesPromoted ?? 0) + 1
            } else {
                $0.totals.canariesRolledBack = ($0.totals.canariesRolledBack ?? 0) + 1
            }
        }
    }

    func upgradeFinished(succeeded: Bool) {
        (succeeded ? upgradesSucceeded : upgradesFailed).increment()
        state.withLockedValue { if succeeded { $0.totals.upgradesSucceeded += 1 } else { $0.totals.upgradesFailed += 1 } }
    }

    func rolledBack() {
        rollbacks.increment()
        state.withLockedValue { $0.totals.rollbacks += 1 }
    }

    func restarted() {
        restarts.increment()
        state.withLockedValue { $0.totals.restarts += 1 }
    }

    /// `outcome`: "succeeded", "refused" (the check failed) or "failed" (the exec failed).
    func reexecuted(_ outcome: String) {
        reexecutions[outcome]?.increment()
        state.withLockedValue {
            switch outcome {
            case "succeeded": $0.totals.reexecutionsSucceeded += 1
            case "refused": $0.totals.reexecutionsRefused += 1
            default: $0.totals.reexecutionsFailed += 1
            }
        }
    }

    /// Counts what the state machine reports.
    func count(_ metric: MasterStateMachine.Metric) {
        switch metric {
        case .upgrade(let succeeded): upgradeFinished(succeeded: succeeded)
        case .rollback: rolledBack()
        case .restart: restarted()
        case .reexec(let outcome): reexecuted(outcome)
        case .canary(let outcome): canaryEnded(outcome)
        case .ready(let after): ready(after: after)
        case .drained(let after): drained(after: after)
        case .adoption:
            adoptions.increment()
            state.withLockedValue { $0.totals.adoptions = ($0.totals.adoptions ?? 0) + 1 }
        }
    }

    func ready(after duration: Duration) { timeToReady.record(duration) }

    func drained(after duration: Duration) { drainTime.record(duration) }

    /// Sets the generation gauges, the serving-version info metric and the open connections
    /// by generation and kind from the table.
    func update(_ table: [Generation]) {
        updateConnections(table)
        for (state, gauge) in generations { gauge.set(to: Double(table.filter { $0.state == state }.count)) }
        let serving = table.last { $0.state == .serving }
        let labels = serving.map { [$0.version, String($0.number), String($0.pid)] } ?? []
        state.withLockedValue { current in
            guard current.servingLabels != labels else { return }
            if let gauge = current.serving { registry.unregisterGauge(gauge) }
            current.serving = serving.map {
                let gauge = registry.makeGauge(descriptor: .baton("baton_serving_info", help: "The generation serving now (value 1)."),
                                               labels: [("version", $0.version), ("generation", String($0.number)), ("pid", String($0.pid))])
                gauge.set(to: 1.0)
                return gauge
            }
            current.servingLabels = labels
        }
    }

    /// One gauge per generation, its state and kind of connection; a generation's gauges go
    /// with it (or when its state changes).
    private func updateConnections(_ table: [Generation]) {
        var wanted: [ConnectionGaugeKey: Int] = [:]
        for generation in table {
            for (kind, count) in generation.connections ?? [:] {
                wanted[ConnectionGaugeKey(generation: generation.number, state: generation.state.rawValue, kind: kind)] = count
            }
        }
        connections.withLockedValue { gauges in
            for (key, gauge) in gauges where wanted[key] == nil {
                registry.unregisterGauge(gauge)
                gauges[key] = nil
            }
            for (key, count) in wanted {
                let gauge = gauges[key] ?? registry.makeGauge(
                    descriptor: .baton("baton_open_connections",
                                       help: "Open connections of each live generation by kind (http1, https, h2c, h2, ws, wss), as its worker last reported them."),
                    labels: [("generation", String(key.generation)), ("state", key.state), ("kind", key.kind)])
                gauge.set(to: Double(count))
                gauges[key] = gauge
            }
        }
    }

    /// Everything, in Prometheus text exposition format.
    func text() -> String { registry.emitToString() }
}

extension MetricNameDescriptor {
    /// A metric named `name` whole: swift-prometheus joins a descriptor's non-empty parts with "_",
    /// and Baton's names carry their unit already (`baton_drain_seconds`, `…_total`).
    static func baton(_ name: String, help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }
}
