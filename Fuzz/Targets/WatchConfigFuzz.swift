#if DEBUG
@testable import Baton
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension FuzzTargets {
    /// watch.conf, which the user edits: `WatchConfig.parse`.
    static let watchConf = FuzzTarget(
        name: "watch-conf",
        summary: "watch.conf bytes → WatchConfig.parse: a WatchConfigError naming the file (and the key at fault); an accepted config is in range and parses back from its own JSON",
        check: checkWatchConf)

    static let watchConfPath = "/srv/app/watch.conf"

    static func checkWatchConf(_ bytes: [UInt8]) -> [String] {
        var findings = Findings()
        let config: WatchConfig
        do {
            config = try WatchConfig.parse(Data(bytes), path: watchConfPath)
        } catch let error as WatchConfigError {
            let text = error.description
            findings.expect(error.path == watchConfPath && text.hasPrefix(watchConfPath), "the error does not name the file: \(text)")
            findings.expectMessage(error.problem, "watch.conf rejection")
            if let key = error.key { findings.expect(text.contains("\"\(key)\""), "the error does not name its key \(key): \(text)") }
            return findings.broken
        } catch {
            return ["threw \(type(of: error)) instead of a WatchConfigError: \(error)"]
        }
        findings.expect((1...65535).contains(config.httpPort), "port \(config.httpPort) accepted")
        findings.expect(!config.version.isEmpty && config.version.count <= 128, "version '\(config.version)' accepted")
        findings.expect(config.delaySeconds.isFinite && (0...3600).contains(config.delaySeconds), "delay \(config.delaySeconds) accepted")
        findings.expect(!config.binName.isEmpty, "empty BinName accepted")
        if let sha256 = config.sha256 {
            findings.expect(sha256.utf8.count == 64 && sha256.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) },
                            "Sha256 '\(sha256)' is not 64 lowercase hex digits")
        }
        if let canary = config.canary {
            findings.expect(canary.problem == nil, "an accepted Canary has a problem: \(canary.problem ?? "")")
            _ = canary.summary
        }
        // Written back out and read again: the same config (a canary's window to the millisecond it keeps).
        do {
            let again = try WatchConfig.parse(Data(render(config).utf8), path: watchConfPath)
            var expected = config
            if let window = again.canary?.window, let original = config.canary?.window, abs((window - original).milliseconds) <= 1 {
                expected.canary?.window = window
            }
            findings.expect(again == expected, "does not parse back the same: \(config) → \(again)")
        } catch {
            findings.expect(false, "its own rendering is refused: \(error)")
        }
        return findings.broken
    }

    /// `config` as watch.conf JSON.
    static func render(_ config: WatchConfig) -> String {
        func string(_ text: String) -> String {
            let data = (try? JSONEncoder().encode(text)) ?? Data()
            return String(decoding: data, as: UTF8.self)
        }
        var fields = [#""HttpPort": \#(config.httpPort)"#, #""Ver": \#(string(config.version))"#,
                      #""DelaySecond": \#(config.delaySeconds)"#, #""BinName": \#(string(config.binName))"#]
        if let sha256 = config.sha256 { fields.append(#""Sha256": "\#(sha256)""#) }
        if let canary = config.canary {
            fields.append(#""Canary": {"Percent": \#(canary.percent), "Seconds": \#(Double(canary.window.milliseconds) / 1000), "MinRequests": \#(canary.minRequests), "MaxErrorRateIncrease": \#(canary.maxErrorRateIncrease), "MaxP99Ratio": \#(canary.maxP99Ratio), "P99MarginMs": \#(canary.p99Margin.milliseconds)}"#)
        }
        return "{" + fields.joined(separator: ", ") + "}"
    }
}
#endif
