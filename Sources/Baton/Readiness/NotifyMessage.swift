/// One sd_notify datagram: newline-separated `KEY=VALUE` assignments (`READY=1`, `STATUS=…`,
/// `STOPPING=1`, `RELOADING=1`, `MAINPID=…`, …) as `sd_notify(3)` defines them.
package struct NotifyMessage: Sendable, Equatable {
    /// The assignments, in order.
    package var fields: [(key: String, value: String)]

    package init(_ fields: [(key: String, value: String)]) { self.fields = fields }

    /// Parses a datagram; lines without `=` are ignored, as systemd does.
    ///
    /// Split by byte, as systemd splits: by Character, "\r\n" is one character and no line break
    /// (`STATUS=x\r\nREADY=1` would not be ready), and "=" followed by a combining mark no "=".
    package init(parsing text: String) {
        self.fields = text.utf8.split(separator: UInt8(ascii: "\n")).compactMap { line in
            guard let equals = line.firstIndex(of: UInt8(ascii: "=")) else { return nil }
            return (String(decoding: line[..<equals], as: UTF8.self), String(decoding: line[line.index(after: equals)...], as: UTF8.self))
        }
    }

    /// The last value assigned to `key`.
    package subscript(key: String) -> String? { fields.last { $0.key == key }?.value }

    /// `READY=1`.
    package var isReady: Bool { self["READY"] == "1" }
    /// `STOPPING=1`.
    package var isStopping: Bool { self["STOPPING"] == "1" }
    /// `BATON_HANDOFF=1` (Baton's own, with `READY=1`): the worker serves connections handed to
    /// its connection inbox.
    package var takesConnections: Bool { self[Self.takesConnectionsKey] == "1" }
    static let takesConnectionsKey = "BATON_HANDOFF"
    /// `BATON_CANARY=1` (with `READY=1`): the worker follows ``WorkerOrder``s and reports its
    /// request counts.
    package var followsCanaryOrders: Bool { self[Self.canaryKey] == "1" }
    static let canaryKey = "BATON_CANARY"
    /// `BATON_RESUME=1` (with `READY=1`): while draining, the worker takes a `resume` order
    /// (``WorkerOrder/resume``) and serves again.
    package var resumes: Bool { self[Self.resumeKey] == "1" }
    static let resumeKey = "BATON_RESUME"
    /// `BATON_STATS=…`: the worker's request counts so far (``RequestStats/wire``); nil when
    /// absent or malformed.
    package var stats: RequestStats? { self[Self.statsKey].flatMap(RequestStats.init(wire:)) }
    static let statsKey = "BATON_STATS"
    /// `BATON_CONNECTIONS=http1:10,ws:2000`: the worker's open connections by kind (an empty
    /// value: none); nil when absent or malformed (a kind is 1–16 of `a-z0-9`, a count 0…10⁹, at
    /// most 16 kinds).
    package var connections: [String: Int]? {
        guard let value = self[Self.connectionsKey] else { return nil }
        var counts: [String: Int] = [:]
        for entry in value.split(separator: ",", omittingEmptySubsequences: false) where !value.isEmpty {
            let parts = entry.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, (1...16).contains(parts[0].utf8.count),
                  parts[0].utf8.allSatisfy({ (97...122).contains($0) || (48...57).contains($0) }),
                  let count = Int(parts[1]), (0...1_000_000_000).contains(count), counts[String(parts[0])] == nil else { return nil }
            counts[String(parts[0])] = count
        }
        return counts.count <= 16 ? counts : nil
    }
    static let connectionsKey = "BATON_CONNECTIONS"
    /// The `STATUS=` text, if any.
    package var status: String? { self["STATUS"] }

    /// The wire form.
    package var text: String { fields.map { "\($0.key)=\($0.value)" }.joined(separator: "\n") }

    package static func == (lhs: NotifyMessage, rhs: NotifyMessage) -> Bool { lhs.text == rhs.text }
}
