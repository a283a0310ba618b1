/// How a canary upgrade runs and how it is judged: the new release serves `percent` of the
/// traffic beside the serving one for `window`, then it is promoted (the usual upgrade of the rest)
/// or rolled back (it drains, its connections go back to the serving release).
///
/// It fails its trial when, over the window, it answered fewer than `minRequests` requests (no
/// evidence either way), when its share of 5xx answers exceeds the serving release's by more than
/// `maxErrorRateIncrease`, or when its p99 or median latency exceeds the serving release's by
/// more than `maxP99Ratio` times *and* by more than `p99Margin` (so that a sub-millisecond p99
/// that doubles does not fail a release).
///
/// Set it in watch.conf (`"Canary": {"Percent": 10, "Seconds": 60}`), or with
/// `baton reload --canary --canary-percent 10 --canary-seconds 60`.
public struct CanarySettings: Sendable, Equatable, Codable {
    /// The share of new connections, and of the keep-alive connections open when the window
    /// starts, that the canary gets: 1…50.
    public var percent: Int
    /// How long the canary serves before it is judged.
    public var window: Duration
    /// The fewest requests the canary must have answered in the window to be judged at all.
    public var minRequests: Int
    /// How much higher the canary's 5xx rate may be than the serving release's (0.01: one
    /// percentage point).
    public var maxErrorRateIncrease: Double
    /// How many times the serving release's p99 (and median) the canary's may be (with ``p99Margin``).
    public var maxP99Ratio: Double
    /// A p99 (or median) within this of the serving release's passes whatever the ratio.
    public var p99Margin: Duration

    /// The defaults: 10% for 60 s, at least 100 requests, one percentage point more 5xx, p99
    /// at most 1.5× the serving release's (or within 10 ms of it).
    public init(percent: Int = 10, window: Duration = .seconds(60), minRequests: Int = 100, maxErrorRateIncrease: Double = 0.01,
                maxP99Ratio: Double = 1.5, p99Margin: Duration = .milliseconds(10)) {
        self.percent = percent
        self.window = window
        self.minRequests = minRequests
        self.maxErrorRateIncrease = maxErrorRateIncrease
        self.maxP99Ratio = maxP99Ratio
        self.p99Margin = p99Margin
    }

    /// The allowed shares.
    public static let percentRange = 1...50
    /// The allowed windows, in seconds.
    public static let windowRange: ClosedRange<Double> = 1...3600

    /// Nil when the settings can be used; otherwise what is wrong with them.
    public var problem: String? {
        if !Self.percentRange.contains(percent) { return "percent must be \(Self.percentRange.lowerBound)…\(Self.percentRange.upperBound) (got \(percent))" }
        let seconds = Double(window.milliseconds) / 1000
        if !Self.windowRange.contains(seconds) { return "the window must be 1…3600 s (got \(seconds) s)" }
        if minRequests < 0 { return "the minimum number of requests must not be negative (got \(minRequests))" }
        if !(0...1).contains(maxErrorRateIncrease) { return "the allowed 5xx increase must be 0…1 (got \(maxErrorRateIncrease))" }
        if !(maxP99Ratio >= 1 && maxP99Ratio.isFinite) { return "the allowed p99 ratio must be at least 1 (got \(maxP99Ratio))" }
        if p99Margin < .zero { return "the p99 margin must not be negative" }
        return nil
    }

    /// "10% for 60 s".
    public var summary: String { "\(percent)% for \(window.shortDescription)" }
}

/// A canary asked for by hand (`baton reload --canary`): what it sets overrides watch.conf's
/// `Canary`, which overrides the defaults.
public struct CanaryRequest: Sendable, Equatable, Codable {
    /// The share, if given.
    public var percent: Int?
    /// The window in seconds, if given.
    public var seconds: Double?

    /// A request that overrides what it names.
    public init(percent: Int? = nil, seconds: Double? = nil) {
        self.percent = percent
        self.seconds = seconds
    }

    /// `base` with this request's values in place of its own.
    public func applied(to base: CanarySettings?) -> CanarySettings {
        var settings = base ?? CanarySettings()
        if let percent { settings.percent = percent }
        if let seconds, seconds.isFinite, seconds >= 0, seconds <= 86_400 { settings.window = .milliseconds(Int64(seconds * 1000)) }
        else if seconds != nil { settings.window = .seconds(-1) }  // out of range: refused with the settings' problem
        return settings
    }
}
