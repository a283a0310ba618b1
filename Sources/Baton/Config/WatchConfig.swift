import Foundation

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

    /// The seed's four keys, all required.
    public static let requiredKeys: Set<String> = ["HttpPort", "Ver", "DelaySecond", "BinName"]
    /// Every key accepted.
    public static let knownKeys: Set<String> = requiredKeys.union(["Sha256"])

    /// A config with these values (no validation: see ``parse(_:path:)``).
    public init(httpPort: Int, version: String, delaySeconds: Double, binName: String, sha256: String? = nil) {
        self.httpPort = httpPort
        self.version = version
        self.delaySeconds = delaySeconds
        self.binName = binName
        self.sha256 = sha256
    }

    /// Reads and validates the file at `path`.
    public static func load(path: String) throws -> WatchConfig {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw WatchConfigError(path: path, key: nil, problem: "cannot be read (\((error as NSError).localizedDescription))")
        }
        return try parse(data, path: path)
    }

    /// Parses and validates watch.conf contents; `path` is only used in error messages.
    public static func parse(_ data: Data, path: String) throws -> WatchConfig {
        func fail(_ key: String?, _ problem: String) -> WatchConfigError { WatchConfigError(path: path, key: key, problem: problem) }
        let object: [String: Any]
        do {
            guard let parsed = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw fail(nil, "must be a JSON object like {\"HttpPort\": \"8080\", \"Ver\": \"1\", \"DelaySecond\": 5, \"BinName\": \"app\"}")
            }
            object = parsed
        } catch let error as WatchConfigError {
            throw error
        } catch {
            throw fail(nil, "is not valid JSON (\((error as NSError).userInfo[NSDebugDescriptionErrorKey] ?? error))")
        }
        if let unknown = object.keys.filter({ !knownKeys.contains($0) }).sorted().first {
            throw fail(unknown, "is not a known key (expected one of \(knownKeys.sorted().joined(separator: ", ")))")
        }
        for key in requiredKeys.sorted() where object[key] == nil { throw fail(key, "is missing") }

        let port: Int
        switch object["HttpPort"] {
        case let text as String where Int(text) != nil: port = Int(text)!
        case let number as NSNumber where !isBool(number) && Double(number.intValue) == number.doubleValue: port = number.intValue
        default: throw fail("HttpPort", "must be a port number from 1 to 65535, as a string or a number")
        }
        guard (1...65535).contains(port) else { throw fail("HttpPort", "must be from 1 to 65535, not \(port)") }

        guard let version = object["Ver"] as? String, !version.isEmpty, version.count <= 128,
              version.allSatisfy({ $0.isLetter || $0.isNumber || "._-+".contains($0) }) else {
            throw fail("Ver", "must be a non-empty string of letters, digits and . _ - + (at most 128)")
        }
        guard let delayNumber = object["DelaySecond"] as? NSNumber, !isBool(delayNumber),
              delayNumber.doubleValue.isFinite, (0...3600).contains(delayNumber.doubleValue) else {
            throw fail("DelaySecond", "must be a number of seconds from 0 to 3600")
        }
        guard let binName = object["BinName"] as? String, !binName.isEmpty else {
            throw fail("BinName", "must be a non-empty file name")
        }
        var sha256: String?
        if let value = object["Sha256"] {
            guard let text = value as? String, text.count == 64, text.allSatisfy(\.isHexDigit) else {
                throw fail("Sha256", "must be the binary's SHA-256 as 64 hex digits (sha256sum prints it)")
            }
            sha256 = text.lowercased()
        }
        return WatchConfig(httpPort: port, version: version, delaySeconds: delayNumber.doubleValue, binName: binName, sha256: sha256)
    }

    private static func isBool(_ number: NSNumber) -> Bool {
        String(cString: number.objCType) == "c"  // JSON true/false
    }
}

/// A watch.conf that cannot be used, and why.
public struct WatchConfigError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let key: String?
    public let problem: String

    public var description: String {
        if let key { return "\(path): \"\(key)\" \(problem)" }
        return "\(path) \(problem)"
    }
}
