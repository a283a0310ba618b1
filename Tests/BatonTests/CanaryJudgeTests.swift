import XCTest
@testable import Baton

/// Request counts, their wire form, and the canary's verdict.
final class CanaryJudgeTests: XCTestCase {
    func testEveryLatencyFallsInABucketAtMostAnEighthWide() {
        var value: Int64 = 0
        while value < 1 << 41 {
            let bucket = RequestStats.bucket(microseconds: value)
            let upper = RequestStats.upperBound(ofBucket: bucket)
            if value < 1 << 40 {
                XCTAssertGreaterThanOrEqual(upper, value)
                XCTAssertLessThanOrEqual(Double(upper), Double(value) * 1.125 + 1, "\(value) µs → bucket \(bucket) up to \(upper)")
            }
            XCTAssertLessThanOrEqual(bucket, RequestStats.maxBucket)
            value = value < 100 ? value + 1 : value + value / 7
        }
    }

    func testQuantilesAndDifferences() {
        var stats = RequestStats()
        for _ in 0..<980 { stats.record(status: 200, microseconds: 1_000) }
        for _ in 0..<20 { stats.record(status: 503, microseconds: 100_000) }
        XCTAssertEqual(stats.errorRate, 0.02)
        let p99 = try! XCTUnwrap(stats.quantile(0.99))
        XCTAssertTrue(p99 >= .milliseconds(100) && p99 <= .milliseconds(113), "\(p99)")
        XCTAssertTrue(stats.quantile(0.5)! <= .microseconds(1_125))
        var later = stats
        for _ in 0..<10 { later.record(status: 200, microseconds: 5) }
        let window = later.since(stats)
        XCTAssertEqual(window.requests, 10)
        XCTAssertEqual(window.serverErrors, 0)
        XCTAssertEqual(window.buckets, [5: 10])
        XCTAssertNil(RequestStats().quantile(0.99))
    }

    func testTheWireFormRoundTripsAndNonsenseIsRefused() {
        var stats = RequestStats()
        stats.record(status: 200, microseconds: 40)
        stats.record(status: 500, microseconds: 70_000)
        XCTAssertEqual(RequestStats(wire: stats.wire), stats)
        XCTAssertEqual(RequestStats(wire: "r=0 e=0 h="), RequestStats())
        for bad in ["", "r=1", "r=1 e=2 h=", "r=-1 e=0 h=", "r=2 e=0 h=1:5", "r=2 e=0 h=999:1", "r=2 e=0 h=1:1,1:1", "r=x e=0 h=", "r=2 e=0 h=1"] {
            XCTAssertNil(RequestStats(wire: bad), bad)
        }
    }

    func testVerdicts() {
        let settings = CanarySettings()
        func stats(_ requests: Int, errors: Int = 0, microseconds: Int64 = 1_000) -> RequestStats {
            var stats = RequestStats()
            for index in 0..<requests { stats.record(status: index < errors ? 500 : 200, microseconds: microseconds) }
            return stats
        }
        let baseline = stats(10_000, errors: 10)
        XCTAssertTrue(CanaryJudge.judge(canary: stats(1_000, errors: 1), baseline: baseline, settings: settings).passed)
        let errors = CanaryJudge.judge(canary: stats(1_000, errors: 50), baseline: baseline, settings: settings)
        XCTAssertFalse(errors.passed)
        XCTAssertTrue(errors.description.hasPrefix("5xx rate 5.0% against the serving release's 0.1% (allowed: 1.0% more)"), errors.description)
        let slow = CanaryJudge.judge(canary: stats(1_000, microseconds: 51_000), baseline: baseline, settings: settings)
        XCTAssertFalse(slow.passed)
        XCTAssertTrue(slow.description.contains("p99 latency"), slow.description)
        // A serving release whose p99 is its own queueing: the canary's median still shows it.
        var queued = stats(9_000, microseconds: 1_000)
        for _ in 0..<1_000 { queued.record(status: 200, microseconds: 73_000) }
        let hidden = CanaryJudge.judge(canary: stats(1_000, microseconds: 51_000), baseline: queued, settings: settings)
        XCTAssertFalse(hidden.passed)
        XCTAssertTrue(hidden.description.hasPrefix("median latency"), hidden.description)
        // Three times slower but within the margin: a sub-millisecond p99 is not judged on its ratio.
        XCTAssertTrue(CanaryJudge.judge(canary: stats(1_000, microseconds: 3_000), baseline: baseline, settings: settings).passed)
        XCTAssertFalse(CanaryJudge.judge(canary: stats(99), baseline: baseline, settings: settings).passed)
    }

    func testTheEarlyRuleWaitsForConfidence() {
        let settings = CanarySettings()
        var canary = RequestStats()
        for index in 0..<100 { canary.record(status: index < 2 ? 500 : 200, microseconds: 10) }
        XCTAssertNotNil(CanaryJudge.errorFailure(canary: canary, baseline: RequestStats(), settings: settings), "2% > 1% at the window's end")
        XCTAssertNil(CanaryJudge.errorFailure(canary: canary, baseline: RequestStats(), settings: settings, confident: true),
                     "2 in 100 may be bad luck")
        for index in 0..<400 { canary.record(status: index < 18 ? 500 : 200, microseconds: 10) }
        XCTAssertNotNil(CanaryJudge.errorFailure(canary: canary, baseline: RequestStats(), settings: settings, confident: true), "20 in 500")
        XCTAssertEqual(CanaryJudge.wilsonLowerBound(errors: 0, of: 100), 0)
    }

    func testSettingsProblems() {
        XCTAssertNil(CanarySettings().problem)
        XCTAssertEqual(CanarySettings(percent: 0).problem, "percent must be 1…50 (got 0)")
        XCTAssertNotNil(CanaryRequest(seconds: 7200).applied(to: nil).problem)
        XCTAssertEqual(CanaryRequest(percent: 20).applied(to: CanarySettings(percent: 5, window: .seconds(9))),
                       CanarySettings(percent: 20, window: .seconds(9)))
    }
}
