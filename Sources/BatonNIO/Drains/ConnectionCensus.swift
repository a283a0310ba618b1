import NIOConcurrencyHelpers

/// What an open connection speaks, as counted for the master (`baton status`, the metrics):
/// each kind drains its own way.
public enum ConnectionKind: String, Sendable, CaseIterable {
    /// HTTP/1.x: handed over at a drain.
    case http1
    /// HTTP/1.x over TLS: closed gracefully at a drain (a TLS session cannot move).
    case https
    /// HTTP/2 without TLS: the two-step GOAWAY.
    case h2c
    /// HTTP/2 over TLS.
    case h2
    /// A WebSocket: 1001 over the close window.
    case ws
    /// A WebSocket over TLS.
    case wss
    /// TLS whose handshake has not chosen a protocol yet.
    case tls
    /// A pipeline Baton has no drain for.
    case other
}

/// This worker's open connections by kind. Each connection's ``ConnectionActivity`` moves
/// itself from kind to kind (an upgrade to WebSocket, an ALPN handshake) and out at its close.
public final class ConnectionCensus: Sendable {
    /// The worker's census (one per process, as its connections are).
    public static let shared = ConnectionCensus()

    private let counts = NIOLockedValueBox([ConnectionKind: Int]())

    /// An empty census; workers use ``shared``, tests their own.
    public init() {}

    /// Open connections by kind, those with none left out.
    public var snapshot: [ConnectionKind: Int] { counts.withLockedValue { $0.filter { $0.value > 0 } } }

    func move(from old: ConnectionKind?, to new: ConnectionKind?) {
        guard old != new else { return }
        counts.withLockedValue { counts in
            if let old { counts[old, default: 0] -= 1 }
            if let new { counts[new, default: 0] += 1 }
        }
    }

    /// `h2c:3,http1:10,ws:2000`, in a fixed order: what the worker reports to the master
    /// (`BATON_CONNECTIONS=`).
    public static func wire(_ counts: [ConnectionKind: Int]) -> String {
        ConnectionKind.allCases.compactMap { kind in counts[kind].map { "\(kind.rawValue):\($0)" } }.joined(separator: ",")
    }
}
