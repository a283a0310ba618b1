import NIOConcurrencyHelpers

/// What a worker counts of the requests it answers, for judging a canary: requests, 5xx
/// answers and a latency histogram (see ``RequestRecorder`` for what the latency measures).
///
/// The histogram has buckets 12.5% wide (eight per power of two of microseconds, exact below
/// 16 µs), so a quantile read from it is within 12.5% of the true one; it covers 1 µs to 12 days. Snapshots are cumulative: the master judges the difference between two of them.
public struct RequestStats: Sendable, Equatable {
    /// Requests answered.
    public var requests: Int = 0
    /// Of them, answered with a 5xx status.
    public var serverErrors: Int = 0
    /// Requests per latency bucket (``bucket(microseconds:)``), sparse: only non-empty ones.
    public var buckets: [Int: Int] = [:]

    /// Empty counts.
    public init() {}

    /// The bucket of a latency.
    public static func bucket(microseconds: Int64) -> Int {
        guard microseconds >= 16 else { return Int(max(0, microseconds)) }
        let exponent = 63 - microseconds.leadingZeroBitCount  // ≥ 4
        let sub = Int((microseconds >> (exponent - 3)) & 7)
        return min(maxBucket, 16 + (exponent - 4) * 8 + sub)
    }

    /// The largest latency that falls in `bucket`, in microseconds.
    public static func upperBound(ofBucket bucket: Int) -> Int64 {
        guard bucket >= 16 else { return Int64(bucket) }
        let exponent = (bucket - 16) / 8 + 4
        let sub = Int64((bucket - 16) % 8)
        return ((8 + sub + 1) << (exponent - 3)) - 1
    }

    /// Counts one answer.
    public mutating func record(status: Int, microseconds: Int64) {
        requests += 1
        if (500...599).contains(status) { serverErrors += 1 }
        buckets[Self.bucket(microseconds: microseconds), default: 0] += 1
    }

    /// What was counted since `earlier` (a snapshot of the same worker).
    public func since(_ earlier: RequestStats) -> RequestStats {
        var delta = RequestStats()
        delta.requests = max(0, requests - earlier.requests)
        delta.serverErrors = max(0, serverErrors - earlier.serverErrors)
        for (bucket, count) in buckets {
            let left = count - (earlier.buckets[bucket] ?? 0)
            if left > 0 { delta.buckets[bucket] = left }
        }
        return delta
    }

    /// The share of 5xx answers (0 when there were no requests).
    public var errorRate: Double { requests == 0 ? 0 : Double(serverErrors) / Double(requests) }

    /// The latency at quantile `q` (0…1), as the upper bound of its bucket; nil without requests.
    public func quantile(_ q: Double) -> Duration? {
        let total = buckets.values.reduce(0, +)
        guard total > 0 else { return nil }
        let rank = max(1, Int((q * Double(total)).rounded(.up)))
        var seen = 0
        for bucket in buckets.keys.sorted() {
            seen += buckets[bucket]!
            if seen >= rank { return .microseconds(Self.upperBound(ofBucket: bucket)) }
        }
        return nil
    }

    // MARK: Wire form (a `BATON_STATS=` notify field)

    /// `r=1234 e=5 h=40:1000,48:234`: requests, 5xx answers, bucket:count pairs.
    public var wire: String {
        let pairs = buckets.keys.sorted().map { "\($0):\(buckets[$0]!)" }.joined(separator: ",")
        return "r=\(requests) e=\(serverErrors) h=\(pairs)"
    }

    /// Parses ``wire``; nil when malformed (a count that is not a non-negative number, a bucket
    /// out of range, more errors than requests).
    public init?(wire: String) {
        var requests: Int?
        var errors: Int?
        var buckets: [Int: Int] = [:]
        for field in wire.split(separator: " ") {
            if field.hasPrefix("r=") {
                requests = Int(field.dropFirst(2))
            } else if field.hasPrefix("e=") {
                errors = Int(field.dropFirst(2))
            } else if field.hasPrefix("h=") {
                for pair in field.dropFirst(2).split(separator: ",") {
                    let parts = pair.split(separator: ":")
                    guard parts.count == 2, let bucket = Int(parts[0]), let count = Int(parts[1]),
                          (0...Self.maxBucket).contains(bucket), count > 0, buckets[bucket] == nil else { return nil }
                    buckets[bucket] = count
                }
            }
        }
        // The bucket counts add up without overflow (quantile(_:) adds them), to at most `requests`.
        var counted = 0
        for count in buckets.values {
            let (sum, overflow) = counted.addingReportingOverflow(count)
            guard !overflow else { return nil }
            counted = sum
        }
        guard let requests, let errors, requests >= 0, errors >= 0, errors <= requests, counted <= requests else { return nil }
        self.requests = requests
        self.serverErrors = errors
        self.buckets = buckets
    }

    /// The highest bucket: latencies of 2^40 µs (12 days) and more land in it.
    static let maxBucket = 16 + (40 - 4) * 8
}

/// The counts of this worker process, kept by the HTTP adapters (``record(status:microseconds:)``)
/// and sent to the master every second while they change.
///
/// The latency is the application's: BatonHummingbird's `BatonApplication` and BatonVapor time
/// the responder, from the request handed to it to the response it returns (``timesResponders``).
/// Client-visible latency would also count the time a request waits for the process's event
/// loops, and on a shared core the serving generation, holding most connections, waits the most:
/// in a full benchmark run its queueing (median 49 ms, p99 98 ms) hid a canary that added 50 ms
/// to every answer (median 53 ms, p99 61 ms). The responder's time is what differs between two
/// releases. Without an adapter that times it (a custom child channel), the drain handler counts
/// from a request's head read to its response's end written.
public final class RequestRecorder: Sendable {
    /// The process's recorder.
    public static let shared = RequestRecorder()

    private let stats = NIOLockedValueBox(RequestStats())
    private let respondersTimed = NIOLockedValueBox(false)

    /// Whether an adapter counts each answer itself, with its responder's time (set once, before
    /// the first connection): the per-connection handlers then count nothing.
    public var timesResponders: Bool { respondersTimed.withLockedValue { $0 } }

    /// Called by an adapter that counts each answer with its responder's time.
    public func willTimeResponders() {
        respondersTimed.withLockedValue { $0 = true }
    }

    /// A recorder with nothing counted.
    public init() {}

    /// Counts one answer.
    public func record(status: Int, microseconds: Int64) {
        stats.withLockedValue { $0.record(status: status, microseconds: microseconds) }
    }

    /// The counts so far.
    public var snapshot: RequestStats { stats.withLockedValue { $0 } }
}
