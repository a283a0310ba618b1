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
    public init(parsing text: String) throws {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst("unix:".count))
            guard !path.isEmpty else { throw BatonError.invalidAddress(text, "empty unix socket path") }
            self = .unix(path: path)
            return
        }
        guard let colon = text.lastIndex(of: ":") else {
            throw BatonError.invalidAddress(text, "expected HOST:PORT, :PORT or unix:PATH")
        }
        var host = String(text[..<colon])
        let portText = text[text.index(after: colon)...]
        guard let port = Int(portText), (0...65535).contains(port) else {
            throw BatonError.invalidAddress(text, "port must be a number from 0 to 65535")
        }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self = .tcp(host: host.isEmpty ? "0.0.0.0" : host, port: port)
    }

    /// `host:port` (`[v6]:port`) or `unix:PATH`, as ``init(parsing:)`` reads it.
    public var description: String {
        switch self {
        // A Character, not a String: String.contains(String) resolves to Foundation's (visible
        // here through Crypto), which alone would link all of Foundation and ICU.
        case .tcp(let host, let port): return host.contains(":" as Character) ? "[\(host)]:\(port)" : "\(host):\(port)"
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
