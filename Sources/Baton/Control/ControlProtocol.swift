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
/// Commands: `reload` (upgrade and wait for the outcome; with `canary`, a canary upgrade, answered
/// with its verdict), `reload-master` (re-execute the master's binary in place, then upgrade the
/// workers), `promote` and `abort` (end a canary's window now), `status`, `metrics`, `stop`
/// (graceful).
///
/// `reload-master` cannot answer with the outcome: the process that answers is replaced. It
/// answers once the new binary passed its check, with a ``ReexecTicket``; the client then reads
/// `status` until ``MasterStatus/ImageStatus/executions`` (done) or
/// ``MasterStatus/reexecFailures`` (failed) exceeds the ticket's and no upgrade runs.
package enum ControlProtocol {
    /// `{"command": "reload" | "reload-master" | "status" | "stop"}`.
    package struct Request: Codable, Sendable, Equatable {
        package var command: String
        /// With `reload`: start the new release as a canary, with these overrides.
        package var canary: CanaryRequest?
        package init(command: String, canary: CanaryRequest? = nil) {
            self.command = command
            self.canary = canary
        }
    }

    /// `ok` tells whether the command did what was asked; `message` says what happened.
    package struct Response: Codable, Sendable, Equatable {
        package var ok: Bool
        package var message: String
        package var status: MasterStatus?
        /// Set when the master re-executes itself to fulfil the request.
        package var reexec: ReexecTicket?
        /// How a canary upgrade ended: `promoted` or `rolled_back`.
        package var canary: String?

        package init(ok: Bool, message: String, status: MasterStatus? = nil, reexec: ReexecTicket? = nil, canary: String? = nil) {
            self.ok = ok
            self.message = message
            self.status = status
            self.reexec = reexec
            self.canary = canary
        }
    }

    /// The master's counts just before a re-execution: a later `status` with more executions
    /// tells that it happened, with more failures that it did not.
    package struct ReexecTicket: Codable, Sendable, Equatable {
        package var executions: Int
        package var failures: Int
    }

    /// What `status` reports.
    package struct MasterStatus: Codable, Sendable, Equatable {
        package struct GenerationStatus: Codable, Sendable, Equatable {
            package var generation: Int
            package var pid: Int32
            package var version: String
            package var state: String
            package var ageSeconds: Double
            package var status: String?
            /// Open connections by kind, as the worker last reported them.
            package var connections: [String: Int]?
        }

        /// The program image the master runs.
        package struct ImageStatus: Codable, Sendable, Equatable {
            /// The path it was started from, and re-executes.
            package var path: String
            /// The Baton release it links.
            package var batonVersion: String
            /// How often this process has re-executed itself (0: never).
            package var executions: Int
            /// Since the image started (the process's start, or its last re-execution).
            package var ageSeconds: Double
            /// Whether the file at `path` is not the one running (a new binary was put there).
            package var changedOnDisk: Bool
        }

        package var masterPID: Int32
        /// Since the process started (a re-execution keeps it).
        package var uptimeSeconds: Double
        package var generations: [GenerationStatus]
        package var lastUpgrade: String?
        package var lastUpgradeSucceeded: Bool?
        package var image: ImageStatus?
        /// An upgrade or a re-execution is under way.
        package var upgradeRunning: Bool?
        /// Re-executions refused or failed so far (this image and its predecessors in this process).
        package var reexecFailures: Int?
        package var lastReexec: String?
        /// The canary window under way: the two generations and their counts so far.
        package var canary: String?
        /// How the last canary upgrade ended, and why.
        package var lastCanary: String?
        /// Masters that died and whose workers were adopted, and the last adoption.
        package var adoptions: Int?
        package var lastAdoption: String?
    }

    /// The longest request line accepted.
    package static let maxRequestBytes = 4096

    /// Where a master puts its control socket, and where `baton` looks for it: under
    /// `$RUNTIME_DIRECTORY` when systemd provides one, else in `.baton/` beside the config file,
    /// else in `.baton/` in the working folder.
    package static func socketPath(configPath: String?, environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
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
