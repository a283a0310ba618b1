#if DEBUG
@testable import Baton

extension FuzzTargets {
    /// A listen address as an operator writes it (`--listen`, `--metrics-listen`) or a master
    /// record carries it.
    static let listenAddress = FuzzTarget(
        name: "listen-address",
        summary: "text → ListenAddress(parsing:): an invalidAddress error quoting the text, or an address in range whose description parses back to it",
        check: checkListenAddress)

    static func checkListenAddress(_ bytes: [UInt8]) -> [String] {
        var findings = Findings()
        let text = String(lossy: bytes)
        let address: ListenAddress
        do {
            address = try ListenAddress(parsing: text)
        } catch BatonError.invalidAddress(let quoted, let why) {
            findings.expect(quoted == text, "the error quotes '\(quoted)', not the text")
            findings.expectMessage(why, "listen address rejection")
            return findings.broken
        } catch {
            return ["threw \(error) instead of BatonError.invalidAddress"]
        }
        switch address {
        case .tcp(let host, let port):
            findings.expect((0...65535).contains(port), "port \(port) accepted")
            findings.expect(!host.isEmpty, "an empty host")
        case .unix(let path):
            findings.expect(!path.isEmpty, "an empty path")
        }
        findings.expect((try? ListenAddress(parsing: address.description)) == address,
                        "'\(address.description)' does not parse back to \(address) (from '\(text)')")
        _ = try? address.socketAddress()
        return findings.broken
    }
}
#endif
