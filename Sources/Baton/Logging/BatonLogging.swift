#if canImport(Glibc)
import Glibc
#endif
import Logging

/// Logging set-up shared by Baton's programs (`hello`, `baton`, apps that embed Baton).
public enum BatonLogging {
    /// Bootstraps swift-log once per process: to the journal's format when standard error is
    /// connected to systemd's journal (see `JournalLogHandler`), otherwise swift-log's
    /// `StreamLogHandler` on standard error. `LOG_LEVEL` (trace … critical) overrides `level`.
    public static func bootstrap(level: Logger.Level = .info) {
        let environment = ProcessEnvironment.current()
        let level = environment["LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? level
        let journal = JournalLogHandler.standardErrorIsJournal(environment: environment)
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler = journal ? JournalLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

/// Writes log lines the way systemd's journal reads them from a service's standard error: each
/// line starts with its sd-daemon priority (`<3>` error, `<4>` warning, `<6>` info, …; see
/// sd-daemon(3)) and carries no timestamp (the journal adds its own). `journalctl -p err` then
/// shows errors only.
package struct JournalLogHandler: LogHandler {
    package var metadata: Logger.Metadata = [:]
    package var logLevel: Logger.Level = .info
    private let label: String

    package init(label: String) {
        self.label = label
    }

    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// True when `JOURNAL_STREAM` (`device:inode`, set by systemd) names this process's standard
    /// error: the variable alone is inherited by children whose stderr may go elsewhere.
    package static func standardErrorIsJournal(environment: [String: String]) -> Bool {
        guard let value = environment["JOURNAL_STREAM"] else { return false }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var info = stat()
        guard fstat(STDERR_FILENO, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }

    /// The sd-daemon priority of `level`.
    package static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    /// One journal line: `<6>hello: pid=12 role=master [Baton] message`, without the newline.
    /// Line breaks inside the message would start lines of their own without a priority, so they
    /// become spaces.
    package static func line(level: Logger.Level, label: String, message: String, metadata: Logger.Metadata, source: String) -> String {
        let fields = metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        let text = ([label + ":"] + fields + ["[\(source)]", message]).joined(separator: " ")
        return "<\(priority(level))>" + text.split(whereSeparator: \.isNewline).joined(separator: " ")
    }

    package func log(event: LogEvent) {
        let merged = event.metadata.map { metadata.merging($0) { $1 } } ?? metadata
        let text = Self.line(level: event.level, label: label, message: "\(event.message)", metadata: merged, source: event.source)
        let bytes = Array((text + "\n").utf8)
        // One write(2) per line: lines from several threads and processes stay whole.
        bytes.withUnsafeBytes { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }
}
