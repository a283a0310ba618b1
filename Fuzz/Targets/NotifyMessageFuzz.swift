#if DEBUG
@testable import Baton

extension FuzzTargets {
    /// What a worker sends the master on the notify socket: an sd_notify datagram, with Baton's
    /// own `BATON_STATS=` counts that judge a canary.
    static let notifyMessage = FuzzTarget(
        name: "notify-message",
        summary: "sd_notify datagram → NotifyMessage(parsing:): the assignments sd_notify(3) reads (split at \\n bytes, key before the first =); BATON_STATS → RequestStats(wire:): counts that add up, parse back from their wire form, and judge a canary without a crash",
        check: checkNotifyMessage)

    static func checkNotifyMessage(_ bytes: [UInt8]) -> [String] {
        var findings = Findings()
        // As NotifySocket reads a datagram.
        let message = NotifyMessage(parsing: String(lossy: bytes))
        // systemd's reading: lines at each \n byte, the key up to the first =, lines without = ignored.
        let expected: [(key: String, value: String)] = bytes.split(separator: 0x0A).compactMap { line in
            guard let equals = line.firstIndex(of: 0x3D) else { return nil }
            return (String(lossy: line[..<equals]), String(lossy: line[(equals + 1)...]))
        }
        findings.expect(message.fields.map(\.key) == expected.map(\.key) && message.fields.map(\.value) == expected.map(\.value),
                        "fields \(message.fields), sd_notify reads \(expected)")
        findings.expect(NotifyMessage(parsing: message.text) == message, "'\(message.text)' does not parse back")
        _ = (message.isReady, message.isStopping, message.takesConnections, message.followsCanaryOrders, message.resumes, message.status)

        for case (let key, let value) in message.fields where key == NotifyMessage.statsKey {
            guard let stats = RequestStats(wire: value) else { continue }
            findings.expect(stats.requests >= 0 && (0...stats.requests).contains(stats.serverErrors), "counts \(stats.requests), \(stats.serverErrors) accepted")
            findings.expect(stats.buckets.allSatisfy { (0...RequestStats.maxBucket).contains($0.key) && $0.value > 0 }, "buckets \(stats.buckets) accepted")
            findings.expect(RequestStats(wire: stats.wire) == stats, "'\(stats.wire)' does not parse back")
            // What the master does with the counts of a canary window.
            let window = stats.since(RequestStats())
            _ = window.since(stats)
            _ = CanaryJudge.judge(canary: window, baseline: stats, settings: CanarySettings(minRequests: 0))
            _ = CanaryJudge.errorFailure(canary: window, baseline: window, settings: CanarySettings(minRequests: 0), confident: true)
        }
        return findings.broken
    }
}
#endif
