/// Judges a canary against the release it would replace, over the same window: the pure
/// decision behind a canary upgrade (see ``CanarySettings``).
public enum CanaryJudge {
    /// The decision and its reasons, in one line for the log, `baton status` and `baton reload`.
    public struct Verdict: Sendable, Equatable, CustomStringConvertible {
        /// True: promote the canary; false: roll it back.
        public var passed: Bool
        /// Why, with both sides' figures: `passed: canary 120 requests, …; serving release …`.
        public var description: String
    }

    /// Judges `canary` against `baseline`, both the counts of the window alone.
    public static func judge(canary: RequestStats, baseline: RequestStats, settings: CanarySettings) -> Verdict {
        let figures = Self.figures(canary: canary, baseline: baseline)
        if canary.requests < settings.minRequests {
            return Verdict(passed: false, description: "inconclusive: the canary answered \(canary.requests) request(s), fewer than the \(settings.minRequests) needed to judge it (\(figures))")
        }
        if let failure = errorFailure(canary: canary, baseline: baseline, settings: settings) {
            return Verdict(passed: false, description: "\(failure) (\(figures))")
        }
        // The median too: on a saturated core the serving generation's p99 is mostly its own
        // event-loop queueing (it holds most connections), which can hide a slower canary's p99;
        // its median cannot hide it (a release 50 ms slower: p99 57 ms against 73 ms, but the
        // medians 50 ms against 1 ms).
        for (name, q) in [("p99", 0.99), ("median", 0.5)] {
            guard let canaryQ = canary.quantile(q), let baselineQ = baseline.quantile(q) else { continue }
            let ratio = Double(canaryQ.nanoseconds) / Double(max(1, baselineQ.nanoseconds))
            if ratio > settings.maxP99Ratio && canaryQ - baselineQ > settings.p99Margin {
                return Verdict(passed: false, description: "\(name) latency \(ms(canaryQ)) is \(rounded(ratio))× the serving release's \(ms(baselineQ)) (allowed: \(rounded(settings.maxP99Ratio))×, or within \(ms(settings.p99Margin))) (\(figures))")
            }
        }
        return Verdict(passed: true, description: "passed: \(figures)")
    }

    /// The error rule: the canary's 5xx rate exceeds the serving release's by more than allowed.
    /// Nil while it holds (or with too few requests to say).
    ///
    /// With `confident`, what the master checks as the counts come in, to roll a failing canary
    /// back before its window ends: the rule must hold for the lower bound of the canary's rate
    /// (Wilson score interval, 95%), so that a few unlucky early errors do not end a window that
    /// would have passed.
    public static func errorFailure(canary: RequestStats, baseline: RequestStats, settings: CanarySettings, confident: Bool = false) -> String? {
        guard canary.requests >= max(1, settings.minRequests) else { return nil }
        let rate = confident ? wilsonLowerBound(errors: canary.serverErrors, of: canary.requests) : canary.errorRate
        guard rate - baseline.errorRate > settings.maxErrorRateIncrease else { return nil }
        return "5xx rate \(percent(canary.errorRate)) against the serving release's \(percent(baseline.errorRate)) (allowed: \(percent(settings.maxErrorRateIncrease)) more)"
    }

    /// The lower bound of the 95% Wilson score interval of a rate of `errors` in `count`.
    static func wilsonLowerBound(errors: Int, of count: Int) -> Double {
        guard count > 0 else { return 0 }
        let n = Double(count), p = Double(errors) / n, z = 1.96
        let centre = p + z * z / (2 * n)
        let margin = z * (p * (1 - p) / n + z * z / (4 * n * n)).squareRoot()
        return max(0, (centre - margin) / (1 + z * z / n))
    }

    /// "canary 120 requests, …; serving release 1080 requests, …": both sides of a window.
    public static func figures(canary: RequestStats, baseline: RequestStats) -> String {
        "canary \(describe(canary)); serving release \(describe(baseline))"
    }

    /// "1234 requests, 0.4% 5xx, median 0.9 ms, p99 2.1 ms".
    public static func describe(_ stats: RequestStats) -> String {
        "\(stats.requests) requests, \(percent(stats.errorRate)) 5xx, median \(stats.quantile(0.5).map(ms) ?? "-"), p99 \(stats.quantile(0.99).map(ms) ?? "-")"
    }

    static func percent(_ rate: Double) -> String { "\(rounded(rate * 100))%" }

    static func ms(_ duration: Duration) -> String {
        let micros = duration.nanoseconds / 1000
        if micros < 100 { return "\(micros) µs" }  // a responder's time is often this short
        return micros < 10_000 ? "\(rounded(Double(micros) / 1000)) ms" : "\(micros / 1000) ms"
    }

    /// One decimal, without Foundation's formatting.
    static func rounded(_ value: Double) -> String {
        let tenths = Int((value * 10).rounded())
        return "\(tenths / 10).\(abs(tenths % 10))"
    }
}
