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
/// Commands: `reload` (upgrade and wait for the outcome), `reload-master` (re-execute the
/// master's binary in place, then upgrade the workers), `status`, `stop` (graceful).
///
/// `reload-master` cannot answer with the outcome: the process that answers is replaced. It
/// answers once the new binary passed its check, with a ``ReexecTicket``; the client then reads
/// `status` until ``MasterStatus/ImageStatus/executions`` (done) or
/// ``MasterStatus/reexecFailures`` (failed) exceeds the ticket's and no upgrade runs.
public enum ControlProtocol {
    /// `{"command": "reload" | "reload-master" | "status" | "stop"}`.
    public struct Request: Codable, Sendable, Equatable {
        public var command: String
        public init(command: String) { self.command = command }
    }

    /// `ok` tells whether the command did what was asked; `message` says what happened.
    public struct Response: Codable, Sendable, Equatable {
        public var ok: Bool
        public var message: String
        public var status: MasterStatus?
        /// Set when the master re-executes itself to fulfil the request.
        public var reexec: ReexecTicket?

        public init(ok: Bool, message: String, status: MasterStatus? = nil, reexec: ReexecTicket? = nil) {
            self.ok = ok
            self.message = message
            self.status = status
            self.reexec = reexec
        }
    }

    /// The master's counts just before a re-execution: a later `status` with more executions
    /// tells that it happened, with more failures that it did not.
    public struct ReexecTicket: Codable, Sendable, Equatable {
        public var executions: Int
        public var failures: Int
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

        /// The program image the master runs.
        public struct ImageStatus: Codable, Sendable, Equatable {
            /// The path it was started from, and re-executes.
            public var path: String
            /// The Baton release it links.
            public var batonVersion: String
            /// How often this process has re-executed itself (0: never).
            public var executions: Int
            /// Since the image started (the process's start, or its last re-execution).
            public var ageSeconds: Double
            /// Whether the file at `path` is not the one running (a new binary was put there).
            public var changedOnDisk: Bool
        }

        public var masterPID: Int32
        /// Since the process started (a re-execution keeps it).
        public var uptimeSeconds: Double
        public var generations: [GenerationStatus]
        public var lastUpgrade: String?
        public var lastUpgradeSucceeded: Bool?
        public var image: ImageStatus?
        /// An upgrade or a re-execution is under way.
        public var upgradeRunning: Bool?
        /// Re-executions refused or failed so far (this image and its predecessors in this process).
        public var reexecFailures: Int?
        public var lastReexec: String?
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
        let folder = configPath.map(PathName.folder(of:)) ?? "."
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
