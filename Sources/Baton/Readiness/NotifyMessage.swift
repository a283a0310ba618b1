/// One sd_notify datagram: newline-separated `KEY=VALUE` assignments (`READY=1`, `STATUS=…`,
/// `STOPPING=1`, `RELOADING=1`, `MAINPID=…`, …) as `sd_notify(3)` defines them.
public struct NotifyMessage: Sendable, Equatable {
    /// The assignments, in order.
    public var fields: [(key: String, value: String)]

    public init(_ fields: [(key: String, value: String)]) { self.fields = fields }

    /// Parses a datagram; lines without `=` are ignored, as systemd does.
    public init(parsing text: String) {
        self.fields = text.split(separator: "\n").compactMap { line in
            guard let equals = line.firstIndex(of: "=") else { return nil }
            return (String(line[..<equals]), String(line[line.index(after: equals)...]))
        }
    }

    /// The last value assigned to `key`.
    public subscript(key: String) -> String? { fields.last { $0.key == key }?.value }

    /// `READY=1`.
    public var isReady: Bool { self["READY"] == "1" }
    /// `STOPPING=1`.
    public var isStopping: Bool { self["STOPPING"] == "1" }
    /// `BATON_HANDOFF=1` (Baton's own, with `READY=1`): the worker serves connections handed to
    /// its connection inbox.
    public var takesConnections: Bool { self[Self.takesConnectionsKey] == "1" }
    static let takesConnectionsKey = "BATON_HANDOFF"
    /// The `STATUS=` text, if any.
    public var status: String? { self["STATUS"] }

    /// The wire form.
    public var text: String { fields.map { "\($0.key)=\($0.value)" }.joined(separator: "\n") }

    public static func == (lhs: NotifyMessage, rhs: NotifyMessage) -> Bool { lhs.text == rhs.text }
}
