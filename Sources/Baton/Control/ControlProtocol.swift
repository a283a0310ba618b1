#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The control socket's protocol: one JSON object per line each way, one request per connection.
///
/// ```
/// → {"command":"reload"}
/// ← {"ok":true,"message":"generation 3 (pid 4242, version 2) ready in 85 ms, generation 2 draining"}
/// ```
/// Commands: `reload` (upgrade and wait for the outcome), `status`, `stop` (graceful).
public enum ControlProtocol {
    /// `{"command": "reload" | "status" | "stop"}`.
    public struct Request: Codable, Sendable, Equatable {
        public var command: String
        public init(command: String) { self.command = command }
    }

    /// `ok` tells whether the command did what was asked; `message` says what happened.
    public struct Response: Codable, Sendable, Equatable {
        public var ok: Bool
        public var message: String
        public var status: MasterStatus?

        public init(ok: Bool, message: String, status: MasterStatus? = nil) {
            self.ok = ok
            self.message = message
            self.status = status
        }
    }

    /// What `status` reports.
    public struct MasterStatus: Codable, Sendable, Equatable {
        public struct GenerationStatus: Codable, Sendable, Equatable {
            public var generation: Int
            public var pid: Int32
            public var version: String
            public var state: String
            public var ageSeconds: Double
            public var status: String?
        }

        public var masterPID: Int32
        public var uptimeSeconds: Double
        public var generations: [GenerationStatus]
        public var lastUpgrade: String?
    }

    /// The longest request line accepted.
    public static let maxRequestBytes = 4096

    /// Where a master puts its control socket, and where `baton` looks for it: under
    /// `$RUNTIME_DIRECTORY` when systemd provides one, else in `.baton/` beside the config file,
    /// else in `.baton/` in the working folder.
    public static func socketPath(configPath: String?, environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let runtime = environment["RUNTIME_DIRECTORY"]?.split(separator: ":").first, !runtime.isEmpty {
            return "\(runtime)/baton.sock"
        }
        let folder = configPath.map { ConfigWatcher.split($0).folder } ?? "."
        return "\(folder)/.baton/control.sock"
    }

    static func encode(_ value: some Encodable) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var data = (try? encoder.encode(value)) ?? Data(#"{"ok":false,"message":"encoding failed"}"#.utf8)
        data.append(0x0A)
        return data
    }
}
