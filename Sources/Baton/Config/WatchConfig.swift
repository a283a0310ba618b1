#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// watch.conf, the deploy file of the seed workflow:
/// `{"HttpPort": "8080", "Ver": "1", "DelaySecond": 5, "BinName": "app"}`.
///
/// `HttpPort` may be a string or a number. Unknown keys are an error, so a typo is caught
/// instead of silently ignored. Every error names the file, the key and what was expected.
public struct WatchConfig: Sendable, Equatable {
    /// The TCP port to listen on.
    public var httpPort: Int
    /// The version the new binary reports.
    public var version: String
    /// Seconds to wait after a change before upgrading (so uploads can finish).
    public var delaySeconds: Double
    /// The binary, relative to the config file's folder.
    public var binName: String
    /// Optional `Sha256`: the binary's expected SHA-256 (hex); a mismatch refuses the upgrade.
    public var sha256: String?
    /// Optional `Canary`: upgrade to this release as a canary, e.g.
    /// `{"Percent": 10, "Seconds": 60}`; also `MinRequests`, `MaxErrorRateIncrease` (a fraction,
    /// 0.01 = one percentage point), `MaxP99Ratio`, `P99MarginMs`. See ``CanarySettings``.
    public var canary: CanarySettings?

    /// The seed's four keys, all required.
    public static let requiredKeys: Set<String> = ["HttpPort", "Ver", "DelaySecond", "BinName"]
    /// Every key accepted.
    public static let knownKeys: Set<String> = requiredKeys.union(["Sha256", "Canary"])
    /// Every key accepted in `Canary`.
    public static let canaryKeys: Set<String> = ["Percent", "Seconds", "MinRequests", "MaxErrorRateIncrease", "MaxP99Ratio", "P99MarginMs"]

    /// A config with these values (no validation: see ``parse(_:path:)``).
    public init(httpPort: Int, version: String, delaySeconds: Double, binName: String, sha256: String? = nil, canary: CanarySettings? = nil) {
        self.httpPort = httpPort
        self.version = version
        self.delaySeconds = delaySeconds
        self.binName = binName
        self.sha256 = sha256
        self.canary = canary
    }

    /// Reads and validates the file at `path`.
    public static func load(path: String) throws -> WatchConfig {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw WatchConfigError(path: path, key: nil, problem: "cannot be read (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw WatchConfigError(path: path, key: nil, problem: "cannot be read (\(String(cString: strerror(errno))))") }
            if n == 0 { break }
            bytes += buffer[0..<n]
        }
        return try parse(Data(bytes), path: path)
    }

    /// Parses and validates watch.conf contents; `path` is only used in error messages.
    public static func parse(_ data: Data, path: String) throws -> WatchConfig {
        func fail(_ key: String?, _ problem: String) -> WatchConfigError { WatchConfigError(path: path, key: key, problem: problem) }
        let object: [String: JSONValue]
        do {
            guard case .object(let parsed) = try JSONDecoder().decode(JSONValue.self, from: data) else {
                throw fail(nil, "must be a JSON object like {\"HttpPort\": \"8080\", \"Ver\": \"1\", \"DelaySecond\": 5, \"BinName\": \"app\"}")
            }
            object = parsed
        } catch let error as WatchConfigError {
            throw error
        } catch DecodingError.dataCorrupted(let context) {
            let underlying = context.underlyingError.map { " \($0)" } ?? ""
            throw fail(nil, "is not valid JSON (\(context.debugDescription)\(underlying))")
        } catch {
            throw fail(nil, "is not valid JSON (\(error))")
        }
        if let unknown = object.keys.filter({ !knownKeys.contains($0) }).sorted().first {
            throw fail(unknown, "is not a known key (expected one of \(knownKeys.sorted().joined(separator: ", ")))")
        }
        for key in requiredKeys.sorted() where object[key] == nil { throw fail(key, "is missing") }

        let port: Int
        switch object["HttpPort"] {
        case .string(let text) where Int(text) != nil: port = Int(text)!
        case .number(let number) where number.rounded() == number && abs(number) < 1e9: port = Int(number)
        default: throw fail("HttpPort", "must be a port number from 1 to 65535, as a string or a number")
        }
        guard (1...65535).contains(port) else { throw fail("HttpPort", "must be from 1 to 65535, not \(port)") }

        guard case .string(let version) = object["Ver"], !version.isEmpty, version.count <= 128,
              version.allSatisfy({ $0.isLetter || $0.isNumber || "._-+".contains($0) }) else {
            throw fail("Ver", "must be a non-empty string of letters, digits and . _ - + (at most 128)")
        }
        guard case .number(let delay) = object["DelaySecond"], delay.isFinite, (0...3600).contains(delay) else {
            throw fail("DelaySecond", "must be a number of seconds from 0 to 3600")
        }
        guard case .string(let binName) = object["BinName"], !binName.isEmpty else {
            throw fail("BinName", "must be a non-empty file name")
        }
        var sha256: String?
        if let value = object["Sha256"] {
            guard case .string(let text) = value, text.count == 64, text.allSatisfy(\.isHexDigit) else {
                throw fail("Sha256", "must be the binary's SHA-256 as 64 hex digits (sha256sum prints it)")
            }
            sha256 = text.lowercased()
        }
        let canary = try object["Canary"].map { try parseCanary($0, fail: fail) }
        return WatchConfig(httpPort: port, version: version, delaySeconds: delay, binName: binName, sha256: sha256, canary: canary)
    }

    private static func parseCanary(_ value: JSONValue, fail: (String?, String) -> WatchConfigError) throws -> CanarySettings {
        guard case .object(let object) = value else {
            throw fail("Canary", #"must be an object like {"Percent": 10, "Seconds": 60}"#)
        }
        if let unknown = object.keys.filter({ !canaryKeys.contains($0) }).sorted().first {
            throw fail("Canary.\(unknown)", "is not a known key (expected \(canaryKeys.sorted().joined(separator: ", ")))")
        }
        func number(_ key: String, in range: ClosedRange<Double>, whole: Bool = false) throws -> Double? {
            guard let value = object[key] else { return nil }
            guard case .number(let number) = value, number.isFinite, range.contains(number), !whole || number.rounded() == number else {
                throw fail("Canary.\(key)", "must be a\(whole ? " whole" : "") number from \(range.lowerBound) to \(range.upperBound)")
            }
            return number
        }
        var settings = CanarySettings()
        guard let percent = try number("Percent", in: Double(CanarySettings.percentRange.lowerBound)...Double(CanarySettings.percentRange.upperBound), whole: true),
              let seconds = try number("Seconds", in: CanarySettings.windowRange) else {
            throw fail("Canary", "needs Percent (1…50) and Seconds (1…3600)")
        }
        settings.percent = Int(percent)
        settings.window = .milliseconds(Int64(seconds * 1000))
        if let value = try number("MinRequests", in: 0...1e9, whole: true) { settings.minRequests = Int(value) }
        if let value = try number("MaxErrorRateIncrease", in: 0...1) { settings.maxErrorRateIncrease = value }
        if let value = try number("MaxP99Ratio", in: 1...1000) { settings.maxP99Ratio = value }
        if let value = try number("P99MarginMs", in: 0...3_600_000) { settings.p99Margin = .milliseconds(Int64(value)) }
        return settings
    }

}

/// Any JSON value, decoded with `JSONDecoder` (FoundationEssentials has no JSONSerialization).
/// `true`/`false` stay booleans, never numbers.
enum JSONValue: Decodable, Sendable, Equatable {
    case null, bool(Bool), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }
}

/// A watch.conf that cannot be used, and why.
public struct WatchConfigError: Error, CustomStringConvertible, Equatable {
    /// The file that was read.
    public let path: String
    /// The key at fault; nil when the file as a whole is (not JSON, not an object, unreadable).
    public let key: String?
    /// What is wrong and what was expected.
    public let problem: String

    /// `PATH: "KEY" PROBLEM`, as the log and `baton check` show it.
    public var description: String {
        if let key { return "\(path): \"\(key)\" \(problem)" }
        return "\(path) \(problem)"
    }
}
