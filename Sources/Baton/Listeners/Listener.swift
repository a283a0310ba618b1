#if canImport(Glibc)
import Glibc
#endif
import CBaton
import NIOCore

/// A listening socket owned by this process.
///
/// The master binds its listeners once and keeps them for its whole life; each generation of
/// workers receives duplicates of them at fd 3, 4, … The descriptor is close-on-exec here, so it
/// reaches a child only through Baton's spawner.
public struct Listener: Sendable, Hashable {
    /// The file descriptor.
    public let fd: Int32
    /// The name handed to workers in `LISTEN_FDNAMES` (systemd's `FileDescriptorName=`).
    public let name: String

    /// `name` loses any character systemd forbids in a descriptor name (`:`, controls, non-ASCII),
    /// since `LISTEN_FDNAMES` is colon-separated.
    public init(fd: Int32, name: String) {
        self.fd = fd
        let cleaned = String(name.unicodeScalars.map { $0.isASCII && $0.value > 32 && $0 != ":" ? Character($0) : "_" }.prefix(255))
        self.name = cleaned.isEmpty ? "listener" : cleaned
    }

    /// The default backlog: far above NIO's 128, so a burst during a handover queues in the kernel.
    public static let defaultBacklog: Int32 = 4096

    /// Binds and listens on `address`: SO_REUSEADDR for TCP, an existing unix socket file replaced.
    public static func bind(_ address: ListenAddress, name: String? = nil, backlog: Int32 = defaultBacklog) throws -> Listener {
        let socketAddress = try address.socketAddress()
        let family: Int32
        switch socketAddress {
        case .v4: family = AF_INET
        case .v6: family = AF_INET6
        case .unixDomainSocket: family = AF_UNIX
        }
        // Non-blocking: generations share the socket, so a worker woken for a connection may find
        // that another took it; a blocking accept(2) would then hang.
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw BatonError.errno("socket() for \(address)") }
        do {
            if family != AF_UNIX {
                var on: Int32 = 1
                guard setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
                    throw BatonError.errno("setsockopt(SO_REUSEADDR) on \(address)")
                }
            }
            if case .unix(let path) = address { unlink(path) }
            let rc = socketAddress.withSockAddr { Glibc.bind(fd, $0, socklen_t($1)) }
            guard rc == 0 else { throw BatonError.errno("bind \(address)") }
            guard listen(fd, backlog) == 0 else { throw BatonError.errno("listen on \(address)") }
        } catch {
            _ = Glibc.close(fd)
            throw error
        }
        return Listener(fd: fd, name: name ?? address.description)
    }

    /// The address the socket is bound to (useful after binding port 0).
    public func localAddress() throws -> SocketAddress {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard rc == 0 else { throw BatonError.errno("getsockname(fd \(fd))") }
        return try SocketAddress(storage)
    }

    /// The local TCP port, or nil for a unix socket.
    public var port: Int? { (try? localAddress())?.port }

    /// Sets O_NONBLOCK on the socket (shared by every process holding it), so that
    /// ``acceptConnection()`` never blocks.
    public func makeNonBlocking() throws {
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, flags & O_NONBLOCK != 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0 else {
            throw BatonError.errno("fcntl(O_NONBLOCK) on \(name)")
        }
    }

    /// Accepts one pending connection (non-blocking, close-on-exec). Returns nil when there is
    /// none — normal on a shared socket, where another generation may take it first.
    public func acceptConnection() throws -> Int32? {
        while true {
            let connection = baton_accept(fd)
            if connection >= 0 { return connection }
            switch errno {
            case EAGAIN, EWOULDBLOCK: return nil
            case EINTR, ECONNABORTED, EPROTO: continue
            default: throw BatonError.errno("accept on \(name)")
            }
        }
    }

    /// Closes this process's copy of the socket. Never `shutdown(2)`: other generations share it.
    public func close() {
        _ = Glibc.close(fd)
    }
}

extension SocketAddress {
    init(_ storage: sockaddr_storage) throws {
        var storage = storage
        switch Int32(storage.ss_family) {
        case AF_INET:
            self = withUnsafeBytes(of: &storage) { SocketAddress($0.load(as: sockaddr_in.self), host: "") }
        case AF_INET6:
            self = withUnsafeBytes(of: &storage) { SocketAddress($0.load(as: sockaddr_in6.self), host: "") }
        case AF_UNIX:
            let un = withUnsafeBytes(of: &storage) { $0.load(as: sockaddr_un.self) }
            self = SocketAddress(un)
        default:
            throw BatonError.system("unknown socket family \(storage.ss_family)", EINVAL)
        }
    }
}
