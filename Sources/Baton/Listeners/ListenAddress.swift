import NIOCore

/// Where a listener is bound: a TCP address (IPv4 or IPv6) or a unix-domain socket path.
///
/// Parsed from the forms operators write: `:8080` (every IPv4 address), `127.0.0.1:8080`,
/// `[::1]:8080`, `unix:/run/app.sock`.
public enum ListenAddress: Sendable, Hashable, CustomStringConvertible {
    /// A TCP address; host `0.0.0.0` is every IPv4 address, port 0 a port the kernel picks.
    case tcp(host: String, port: Int)
    /// A unix-domain socket at `path` (an existing socket file there is replaced).
    case unix(path: String)

    /// Parses `:PORT`, `HOST:PORT`, `[IPV6]:PORT` or `unix:PATH`.
    ///
    /// Read by Unicode scalar, not Character: a combining mark after ":" or "[" would hide them,
    /// and ``description`` would not parse back to the same address (a master record carries it).
    public init(parsing text: String) throws {
        let scalars = text.unicodeScalars
        if scalars.starts(with: "unix:".unicodeScalars) {
            let path = String(scalars.dropFirst("unix:".count))
            guard !path.isEmpty else { throw BatonError.invalidAddress(text, "empty unix socket path") }
            self = .unix(path: path)
            return
        }
        guard let colon = scalars.lastIndex(of: ":") else {
            throw BatonError.invalidAddress(text, "expected HOST:PORT, :PORT or unix:PATH")
        }
        var host = Substring(scalars[..<colon])
        guard let port = Int(Substring(scalars[scalars.index(after: colon)...])), (0...65535).contains(port) else {
            throw BatonError.invalidAddress(text, "port must be a number from 0 to 65535")
        }
        if host.unicodeScalars.first == "[" && host.unicodeScalars.last == "]" { host = Substring(host.unicodeScalars.dropFirst().dropLast()) }
        guard !host.unicodeScalars.contains(where: { $0 == "[" || $0 == "]" }) else {
            throw BatonError.invalidAddress(text, "brackets go around an IPv6 host only, as in [::1]:8080")
        }
        self = .tcp(host: host.isEmpty ? "0.0.0.0" : String(host), port: port)
    }

    /// `host:port` (`[v6]:port`) or `unix:PATH`, as ``init(parsing:)`` reads it.
    public var description: String {
        switch self {
        // A scalar, not a String: String.contains(String) resolves to Foundation's (visible here
        // through Crypto), which alone would link all of Foundation and ICU.
        // Brackets also keep a host called "unix" from reading back as a unix socket path.
        case .tcp(let host, let port): return host.unicodeScalars.contains(":") || host == "unix" ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path): return "unix:\(path)"
        }
    }

    func socketAddress() throws -> SocketAddress {
        switch self {
        case .tcp(let host, let port): return try SocketAddress(ipAddress: host, port: port)
        case .unix(let path): return try SocketAddress(unixDomainSocketPath: path)
        }
    }
}
