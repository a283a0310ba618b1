import ArgumentParser
import Baton
#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension BatonCommand {
    struct Reload: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Upgrade the running master and wait for the outcome.",
            discussion: """
                Exits 0 when the new generation serves; non-zero with the reason when it did not (and the old one \
                still serves): 1 for a failed upgrade, 3 for a canary that was rolled back, 2 when the master \
                cannot be reached. With --master, the master first re-executes the binary it was started from, in \
                place (same pid; it must pass a check first), then upgrades the workers.

                With --canary, the new release first serves a share of the traffic beside the serving one for a \
                window, and is judged on its 5xx rate and p99 latency against it: promoted (the usual upgrade) \
                or rolled back by itself. The share and window default to watch.conf's "Canary", else 10% for \
                60 s; `baton promote` and `baton abort` end the window early.
                """)

        @OptionGroup var options: ControlOptions

        @Flag(help: "Re-execute the master's own binary in place (as SIGUSR2 does), then upgrade the workers.")
        var master = false

        @Flag(help: "Start the new release as a canary, and wait for its verdict.")
        var canary = false

        @Option(help: ArgumentHelp("With --canary: the canary's share of the traffic (1…50).", valueName: "percent"))
        var canaryPercent: Int?

        @Option(help: ArgumentHelp("With --canary: how long the canary serves before it is judged (1…3600).", valueName: "seconds"))
        var canarySeconds: Double?

        func validate() throws {
            if !canary && (canaryPercent != nil || canarySeconds != nil) { throw ValidationError("--canary-percent and --canary-seconds need --canary") }
            if canary && master { throw ValidationError("--canary and --master cannot be combined: re-execute the master first") }
            if let canaryPercent, !CanarySettings.percentRange.contains(canaryPercent) { throw ValidationError("--canary-percent must be 1…50") }
            if let canarySeconds, !CanarySettings.windowRange.contains(canarySeconds) { throw ValidationError("--canary-seconds must be 1…3600") }
        }

        func run() async throws {
            let request = ControlProtocol.Request(command: master ? "reload-master" : "reload",
                                                  canary: canary ? CanaryRequest(percent: canaryPercent, seconds: canarySeconds) : nil)
            // The answer comes after the canary's window.
            let wait = options.timeout + (canary ? canarySeconds ?? CanarySettings.windowRange.upperBound : 0)
            let response = try await ask(request, options, timeout: wait)
            print(response.message)
            if response.canary == "rolled_back" { throw ExitCode(3) }
            if !response.ok { throw ExitCode(1) }
            if let ticket = response.reexec { try await Self.follow(ticket, options) }
        }

        /// Reads `status` until the re-execution and the upgrade after it are over; prints the
        /// outcome. The exec window refuses connections briefly: those attempts are retried.
        static func follow(_ ticket: ControlProtocol.ReexecTicket, _ options: ControlOptions) async throws {
            let deadline = ContinuousClock.now + .seconds(options.timeout)
            while ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
                guard let answer = try? await ControlClient.send(.init(command: "status"), to: options.socketPath, timeout: .seconds(5)),
                      let status = answer.status else { continue }
                if (status.reexecFailures ?? 0) > ticket.failures, (status.image?.executions ?? 0) == ticket.executions {
                    print("master re-execution failed: \(status.lastReexec ?? "see the master's log"); the old image keeps running")
                    throw ExitCode(1)
                }
                guard let image = status.image, image.executions > ticket.executions, status.upgradeRunning != true else { continue }
                print("master pid \(status.masterPID) runs \(image.path) (Baton \(image.batonVersion), execution \(image.executions))")
                print(status.lastUpgrade ?? "no upgrade outcome")
                if status.lastUpgradeSucceeded != true { throw ExitCode(1) }
                return
            }
            print("no outcome within \(Int(options.timeout)) s; see `baton status` and the master's log")
            throw ExitCode(1)
        }
    }

    struct Promote: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "End a canary's window now: promote it, and wait until it has taken over.",
            discussion: "Exits 0 once the canary serves all the traffic; 1 when no canary is running.")

        @OptionGroup var options: ControlOptions

        func run() async throws {
            let response = try await ask("promote", options)
            print(response.message)
            if !response.ok { throw ExitCode(1) }
        }
    }

    struct Abort: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "End a canary's window now: roll it back (its connections go back to the serving release).",
            discussion: "Exits 0 once the canary is rolled back; 1 when no canary is running.")

        @OptionGroup var options: ControlOptions

        func run() async throws {
            let response = try await ask("abort", options)
            print(response.message)
            if response.canary != "rolled_back" { throw ExitCode(1) }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the master and its generations.")

        @OptionGroup var options: ControlOptions

        @Flag(help: "Print the status as JSON.")
        var json = false

        func run() async throws {
            let response = try await ask("status", options)
            guard let status = response.status else {
                print(response.message)
                throw ExitCode(1)
            }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(status), as: UTF8.self))
                return
            }
            print("master pid \(status.masterPID), up \(Self.age(status.uptimeSeconds))")
            if let image = status.image {
                let changed = image.changedOnDisk ? "; a newer binary is at that path (SIGUSR2 or `baton reload --master` runs it)" : ""
                print("master image \(image.path) (Baton \(image.batonVersion)), executed \(Self.age(image.ageSeconds)) ago, \(image.executions) re-execution(s)\(changed)")
            }
            print("GEN  PID      VERSION     STATE      AGE      CONNECTIONS")
            for generation in status.generations {
                print([String(generation.generation).padding(4), String(generation.pid).padding(8),
                       (generation.version.isEmpty ? "-" : generation.version).padding(11),
                       generation.state.padding(10), Self.age(generation.ageSeconds).padding(8),
                       Self.connections(generation.connections)].joined(separator: " "))
            }
            print("last upgrade: \(status.lastUpgrade ?? "none yet")")
            if let canary = status.canary { print("canary: \(canary)") }
            if let lastCanary = status.lastCanary { print("last canary: \(lastCanary)") }
            if let adoptions = status.adoptions, adoptions > 0 {
                print("adoptions: \(adoptions) (last: \(status.lastAdoption ?? "?"))")
            }
        }

        /// `12 http1, 2000 ws`; `0` when none is open; `-` when the worker does not report them.
        static func connections(_ counts: [String: Int]?) -> String {
            guard let counts else { return "-" }
            let open = counts.filter { $0.value > 0 }.sorted { $0.key < $1.key }
            return open.isEmpty ? "0" : open.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        }

        static func age(_ seconds: Double) -> String {
            let whole = Int(seconds)
            if whole < 60 {   // "%.1fs" by hand: String(format:) needs all of Foundation
                let tenths = Int((seconds * 10).rounded())
                return "\(tenths / 10).\(tenths % 10)s"
            }
            if whole < 3600 { return "\(whole / 60)m\(whole % 60)s" }
            return "\(whole / 3600)h\(whole % 3600 / 60)m"
        }
    }

    struct Metrics: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the master's metrics (Prometheus text format).",
            discussion: "Upgrades and re-executions by outcome, rollbacks, restarts, generations by state, time to ready and drain time, the serving version.")

        @OptionGroup var options: ControlOptions

        func run() async throws {
            let response = try await ask("metrics", options)
            print(response.message, terminator: response.message.hasSuffix("\n") ? "" : "\n")
            if !response.ok { throw ExitCode(1) }
        }
    }

    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop the master gracefully and wait until it has exited.")

        @OptionGroup var options: ControlOptions

        func run() async throws {
            let response = try await ask("stop", options)
            print(response.message)
            guard response.ok, let pid = response.status?.masterPID else { throw ExitCode(1) }
            let deadline = ContinuousClock.now + .seconds(options.timeout)
            while Self.isRunning(pid) {
                guard ContinuousClock.now < deadline else {
                    print("master pid \(pid) still running after \(Int(options.timeout)) s")
                    throw ExitCode(1)
                }
                try await Task.sleep(for: .milliseconds(50))
            }
            print("master pid \(pid) stopped")
        }

        /// Alive and not a zombie (an exited master waits in state Z until its parent reaps it).
        static func isRunning(_ pid: Int32) -> Bool {
            guard kill(pid, 0) == 0 else { return false }
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return true }
            return !stat[close...].hasPrefix(") Z")
        }
    }

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a watch.conf and its binary without touching a running master.",
            discussion: "Runs every check an upgrade runs (JSON, keys, permissions, complete executable, SHA-256) and writes nothing.")

        @Option(help: "The watch.conf to check.")
        var config: String = "watch.conf"

        @Flag(help: "Accept files writable by group/others or owned by another user.")
        var allowInsecurePermissions = false

        func run() async throws {
            do {
                let deployment = try WatchConfigDeployment(configPath: config, allowInsecurePermissions: allowInsecurePermissions)
                let watch = try deployment.load()
                let binary = try deployment.store.inspect(binName: watch.binName, expectedSHA256: watch.sha256)
                print("\(config): OK: HttpPort \(watch.httpPort), Ver \(watch.version), DelaySecond \(watch.delaySeconds), BinName \(watch.binName)\(watch.canary.map { ", Canary \($0.summary)" } ?? "")")
                print("\(binary.path): OK: \(binary.size) bytes, complete, sha256 \(binary.sha256)")
            } catch {
                print("\(error)")
                throw ExitCode(1)
            }
        }
    }
}

/// Sends `command` to the master and returns its answer; a missing master is a clear error.
func ask(_ command: String, _ options: ControlOptions) async throws -> ControlProtocol.Response {
    try await ask(.init(command: command), options, timeout: options.timeout)
}

/// Sends `request` to the master and waits up to `timeout` seconds for its answer.
func ask(_ request: ControlProtocol.Request, _ options: ControlOptions, timeout: Double) async throws -> ControlProtocol.Response {
    do {
        return try await ControlClient.send(request, to: options.socketPath, timeout: .seconds(timeout))
    } catch {
        print("\(error)")
        throw ExitCode(2)
    }
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
