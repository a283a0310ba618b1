#if canImport(Glibc)
import Glibc
#endif
import CBaton
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What a master hands to its next image across `execve`: the descriptors that survive the exec
/// (by number) and the generation table. Written as JSON into a memfd whose number the next image
/// finds in `BATON_MASTER_RECORD_FD`; read once, then closed.
///
/// Versioned: ``format`` names the record, ``version`` its layout. A master reads every version
/// up to ``currentVersion`` and refuses a newer one, which the check before an exec catches
/// (``MasterCheck``): an older binary is never exec'd into with a record it cannot read. New
/// optional fields may be added without a version change; a changed meaning needs a new version.
///
/// Times are carried as nanoseconds *before* ``writtenAt`` (CLOCK_BOOTTIME, which the exec does
/// not reset), so ages and drain deadlines continue where they were.
struct MasterRecord: Codable, Equatable {
    static let formatName = "baton-master-record"
    static let currentVersion = 1
    /// The environment variable naming the record's descriptor.
    static let environmentKey = "BATON_MASTER_RECORD_FD"

    var format = formatName
    var version = currentVersion
    /// The Baton release that wrote it.
    var writtenBy = Baton.version
    /// CLOCK_BOOTTIME at writing, in nanoseconds.
    var writtenAt: Int64

    struct Image: Codable, Equatable {
        var path: String
        var arguments: [String]
        /// Executions so far, this one included.
        var executions: Int
        /// Nanoseconds since the process (not the image) started.
        var processAge: Int64
    }
    var image: Image

    struct Socket: Codable, Equatable {
        var fd: Int32
        var path: String
    }
    struct BoundListener: Codable, Equatable {
        var fd: Int32
        var name: String
        /// `ListenAddress` text; nil for a socket from socket activation.
        var address: String?
    }
    var listeners: [BoundListener]
    /// The fds new generations get.
    var currentListeners: [Int32]
    var notify: Socket
    var control: Socket?

    struct Plan: Codable, Equatable {
        var executable: String
        var arguments: [String]
        var version: String
        var environment: [String: String]
        var listen: [String]?
    }
    struct GenerationEntry: Codable, Equatable {
        var number: Int
        var pid: Int32
        var version: String
        var state: String
        var age: Int64
        var readyAge: Int64?
        var drainAge: Int64?
        var status: String?
        var plan: Plan
        var listeners: [Int32]
        var control: Int32
        /// The sending end of its connection inbox (absent in records of older releases).
        var inbox: Int32?
        var takesConnections: Bool?
        /// `BATON_CANARY=1` and `BATON_RESUME=1` at ready, a drain called off, and whom it drains
        /// for (absent in records of older releases).
        var followsCanaryOrders: Bool?
        var resumes: Bool?
        var resumed: Bool?
        var drainsFor: Int?
        /// A pidfd on the worker (kept by the keeper; absent in records of older releases).
        var pidfd: Int32?
    }
    var generations: [GenerationEntry]
    var nextNumber: Int
    var currentPlan: Plan?
    var previousPlan: Plan?
    var consecutiveFailures: Int

    struct Outcome: Codable, Equatable {
        var ok: Bool
        var generation: Int?
        var pid: Int32?
        var version: String?
        var readyAfterMilliseconds: Int64?
        var draining: [Int]?
        var reason: String?
    }
    var lastUpgrade: Outcome?
    /// Re-executions refused or failed before this one, and the last one's note.
    var reexecFailures: Int?
    var lastReexec: String?
    /// The metrics' counter totals.
    var metrics: MasterMetrics.Totals?

    /// The master that wrote it (absent in records of older releases).
    var masterPID: Int32?
    /// Adoptions so far, and the last one's note.
    var adoptions: Int?
    var lastAdoption: String?
    /// The keeper (``DescriptorKeeper``), which a re-executed image goes on using: this
    /// master's link to it, its pid, the adopt socket, and what it holds: each name, with the
    /// writer's descriptor number. Absent without a keeper.
    struct Keeper: Codable, Equatable {
        var link: Int32
        var pid: Int32
        var adoptPath: String
        var successorTimeoutMilliseconds: Int64
        var names: [String: Int32]
    }
    var keeper: Keeper?
    /// The watched deploy file (watch.conf) as the writer last read it, for a launch: an
    /// adopting master upgrades when the file is no longer that (a deploy made while no master
    /// ran). Absent without a watched file, and in records of older releases.
    var watchConf: ConfigStamp?
    /// The writer was stopping (draining every generation to exit): a master that adopts from
    /// it finishes the stop. Absent when it was not, and in records of older releases.
    var stopping: Bool?

    // MARK: Time

    static func bootTime() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_BOOTTIME, &now)
        return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    }

    /// `instant` as nanoseconds before `now`.
    static func age(_ instant: ContinuousClock.Instant, now: ContinuousClock.Instant) -> Int64 {
        instant.duration(to: now).nanoseconds
    }

    /// The instant `age` nanoseconds before the record was written.
    ///
    /// Saturating: a corrupt record's `age` or `writtenAt` must not trap the next image, and an
    /// age is capped at half of Int64's nanoseconds (146 years), so that the next record's ages,
    /// taken from these instants later (``age(_:now:)``), still fit.
    func instant(age: Int64) -> ContinuousClock.Instant {
        let cap = Int64.max / 2
        let (sinceWritten, past) = Self.bootTime().subtractingReportingOverflow(writtenAt)
        let (total, overflow) = min(cap, past ? cap : max(0, sinceWritten)).addingReportingOverflow(max(0, age))
        return .now - .nanoseconds(overflow ? cap : min(cap, total))
    }

    // MARK: Plans and outcomes

    init(writtenAt: Int64, image: Image, listeners: [BoundListener], currentListeners: [Int32], notify: Socket,
         control: Socket?, generations: [GenerationEntry], nextNumber: Int, currentPlan: Plan?, previousPlan: Plan?,
         consecutiveFailures: Int, lastUpgrade: Outcome?) {
        self.writtenAt = writtenAt
        self.image = image
        self.listeners = listeners
        self.currentListeners = currentListeners
        self.notify = notify
        self.control = control
        self.generations = generations
        self.nextNumber = nextNumber
        self.currentPlan = currentPlan
        self.previousPlan = previousPlan
        self.consecutiveFailures = consecutiveFailures
        self.lastUpgrade = lastUpgrade
    }

    // MARK: Reading and writing

    /// The record's JSON in a new memfd (close-on-exec until the exec clears it), offset 0.
    func writeToMemfd() throws -> Int32 {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return try Memfd.holding(Array(try encoder.encode(self)), name: "baton-master-record")
    }

    /// Reads and decodes (``decode(_:)``) the record at `fd`, from its current offset.
    static func read(from fd: Int32) throws -> MasterRecord {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw BatonError.errno("reading the master record (fd \(fd))") }
            if count == 0 { break }
            bytes += buffer[0..<count]
            guard bytes.count <= 16 << 20 else { throw BatonError.masterHandover("master record larger than 16 MiB") }
        }
        return try decode(bytes)
    }

    /// Decodes a record's bytes, refusing another format or a newer version with a clear reason.
    static func decode(_ bytes: [UInt8]) throws -> MasterRecord {
        struct Header: Decodable { var format: String?; var version: Int? }
        guard let header = try? JSONDecoder().decode(Header.self, from: Data(bytes)) else {
            throw BatonError.masterHandover("the master record is not JSON (\(bytes.count) bytes)")
        }
        guard header.format == formatName, let version = header.version else {
            throw BatonError.masterHandover("not a master record (format \(header.format ?? "missing"))")
        }
        guard version <= currentVersion else {
            throw BatonError.masterHandover("master record version \(version) is newer than this release reads (\(currentVersion); Baton \(Baton.version))")
        }
        do {
            return try JSONDecoder().decode(MasterRecord.self, from: Data(bytes))
        } catch {
            throw BatonError.masterHandover("master record version \(version) unreadable: \(error)")
        }
    }

    /// The record a previous image left for this one, if any: read, its descriptor closed, and
    /// the variable removed so no worker inherits it.
    static func takeFromEnvironment() throws -> MasterRecord? {
        guard let text = getenv(environmentKey).map({ String(cString: $0) }) else { return nil }
        unsetenv(environmentKey)
        guard let fd = Int32(text), fd > 2 else { throw BatonError.masterHandover("\(environmentKey)=\(text) is not a descriptor") }
        defer { close(fd) }
        return try read(from: fd)
    }
}

extension MasterRecord.Plan {
    init(_ plan: LaunchPlan) {
        self.init(executable: plan.executable, arguments: plan.arguments, version: plan.version,
                  environment: plan.environment, listen: plan.listen?.map(\.description))
    }

    func launchPlan() throws -> LaunchPlan {
        LaunchPlan(executable: executable, arguments: arguments, version: version, environment: environment,
                   listen: try listen?.map { try ListenAddress(parsing: $0) })
    }
}

extension MasterRecord.Outcome {
    init(_ outcome: UpgradeOutcome) {
        switch outcome {
        case .succeeded(let generation, let pid, let version, let readyAfter, let draining):
            self.init(ok: true, generation: generation, pid: pid, version: version,
                      readyAfterMilliseconds: readyAfter.milliseconds, draining: draining)
        case .failed(let reason):
            self.init(ok: false, reason: reason)
        }
    }

    var outcome: UpgradeOutcome {
        guard ok, let generation, let pid else { return .failed(reason: reason ?? "unknown") }
        return .succeeded(generation: generation, pid: pid, version: version ?? "",
                          readyAfter: .milliseconds(readyAfterMilliseconds ?? 0), draining: draining ?? [])
    }
}
