#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import NIOCore
import NIOExtras
import NIOPosix

/// Serves the control protocol (``ControlProtocol``) for a master on a unix socket with mode
/// 0600 in a folder with mode 0700: only the master's user can reload or stop it. Never TCP.
final class ControlServer: Sendable {
    let path: String
    /// The listening socket (kept open across a re-execution of the master).
    let fd: Int32
    private let channel: NIOAsyncChannel<NIOAsyncChannel<ControlRequestDecoder.Frame, ByteBuffer>, Never>

    /// An answer, and what to do once it has been delivered.
    typealias Reply = (ControlProtocol.Response, (@Sendable () -> Void)?)

    private init(path: String, fd: Int32) async throws {
        self.path = path
        self.fd = fd
        self.channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            // A client that half-closes after its request (or instead of ending the line) still
            // gets an answer.
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .bind(fd) { child in
                child.eventLoop.makeCompletedFuture {
                    try child.pipeline.syncOperations.addHandler(ByteToMessageHandler(ControlRequestDecoder()))
                    return try NIOAsyncChannel<ControlRequestDecoder.Frame, ByteBuffer>(wrappingChannelSynchronously: child)
                }
            }
    }

    /// Serves the listening socket `fd` at `path` that a previous image of this master left.
    static func adopt(fd: Int32, path: String) async throws -> ControlServer {
        guard fcntl(fd, F_SETFD, FD_CLOEXEC) == 0 else { throw BatonError.errno("control socket fd \(fd)") }
        return try await ControlServer(path: path, fd: fd)
    }

    /// The control socket's folder must be this user's, and no one else may write to it (it is
    /// made 0700 when it is not). A symbolic link to such a folder is followed only when root or
    /// this user owns it: under systemd, `RuntimeDirectoryPreserve=` with `DynamicUser=` makes
    /// `/run/<name>` root's link into `/run/private/<name>`.
    static func checkFolder(_ folder: String) throws {
        var info = stat()
        guard lstat(folder, &info) == 0 else { throw BatonError.errno("\(folder)") }
        if info.st_mode & S_IFMT == S_IFLNK {
            guard info.st_uid == 0 || info.st_uid == geteuid() else {
                throw BatonError.system("\(folder) is a symbolic link owned by uid \(info.st_uid), neither root nor this user", EPERM)
            }
            guard stat(folder, &info) == 0 else { throw BatonError.errno("\(folder) (a symbolic link)") }
        }
        guard info.st_mode & S_IFMT == S_IFDIR, info.st_uid == geteuid() else {
            throw BatonError.system("\(folder) must be a folder owned by this user", EPERM)
        }
        if info.st_mode & 0o022 != 0 { chmod(folder, 0o700) }
    }

    /// Binds the socket, replacing a stale one, with permissions set before anyone can connect.
    static func bind(path: String) async throws -> ControlServer {
        let folder = PathName.folder(of: path)
        if mkdir(folder, 0o700) != 0 && errno != EEXIST { throw BatonError.errno("creating \(folder)") }
        try checkFolder(folder)
        // A socket file left by a master that died: remove it, unless a master still answers.
        if access(path, F_OK) == 0 {
            if (try? await ControlClient.send(.init(command: "status"), to: path, timeout: .seconds(1))) != nil {
                throw BatonError.system("another master is running with control socket \(path)", EADDRINUSE)
            }
            unlink(path)
        }
        let previous = umask(0o177)  // the socket file is created 0600
        let listener: Listener
        do {
            listener = try Listener.bind(.unix(path: path), backlog: 64)
            umask(previous)
        } catch {
            umask(previous)
            throw error
        }
        chmod(path, 0o600)
        do {
            return try await ControlServer(path: path, fd: listener.fd)
        } catch {
            listener.close()
            throw error
        }
    }

    /// Answers connections until cancelled, with `handle` for each request.
    func serve(logger: Logger, handle: @escaping @Sendable (ControlProtocol.Request) async -> Reply) async {
        do {
            try await withThrowingDiscardingTaskGroup { group in
                try await channel.executeThenClose { inbound in
                    for try await connection in inbound {
                        group.addTask { await Self.answer(connection, logger: logger, handle: handle) }
                    }
                }
            }
        } catch {
            if !(error is CancellationError) { logger.debug("control socket closed: \(error)") }
        }
    }

    func close() async {
        try? await channel.channel.close()
        unlink(path)
    }

    private static func answer(_ connection: NIOAsyncChannel<ControlRequestDecoder.Frame, ByteBuffer>, logger: Logger,
                               handle: @Sendable (ControlProtocol.Request) async -> Reply) async {
        var afterDelivery: (@Sendable () -> Void)?
        var asked: String?
        do {
            try await connection.executeThenClose { inbound, outbound in
                var frames = inbound.makeAsyncIterator()
                guard let frame = try await frames.next() else { return }
                let response: ControlProtocol.Response
                switch frame {
                case .tooLong:
                    response = .init(ok: false, message: "request too long (at most \(ControlProtocol.maxRequestBytes) bytes before the newline)")
                case .truncated:
                    response = .init(ok: false, message: "request truncated: the input ended before a newline")
                case .line(let line):
                    if let request = try? JSONDecoder().decode(ControlProtocol.Request.self, from: Data(line.readableBytesView)) {
                        if request.command == "status" { logger.debug("control: status") } else { logger.info("control: \(request.command)") }
                        asked = request.command
                        (response, afterDelivery) = await handle(request)
                    } else {
                        response = .init(ok: false, message: #"malformed request: expected one JSON line like {"command":"status"}"#)
                    }
                }
                try await outbound.write(ByteBuffer(bytes: ControlProtocol.encode(response)))
            }
        } catch {
            // Nothing else would ever say it: the client went away before its answer was written
            // (a request it made was carried out all the same), or the connection failed.
            logger.warning("control: connection failed\(asked.map { " after a '\($0)' request, its answer lost" } ?? ""): \(error)")
        }
        afterDelivery?()
    }
}

/// Frames the one request line of a control connection, never buffering more than
/// ``ControlProtocol/maxRequestBytes``: a longer line is answered as too long (and the rest of
/// the input discarded) instead of growing the master's memory; input that ends before a newline
/// is answered as truncated.
struct ControlRequestDecoder: ByteToMessageDecoder {
    enum Frame: Sendable {
        case line(ByteBuffer)
        case tooLong
        case truncated
    }
    typealias InboundOut = Frame

    /// Set once the connection's one frame is out: everything after it is discarded.
    private var done = false

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if done {
            buffer.moveReaderIndex(to: buffer.writerIndex)
            return .needMoreData
        }
        let limit = ControlProtocol.maxRequestBytes
        if let newline = buffer.readableBytesView.firstIndex(of: 0x0A) {
            let length = newline - buffer.readerIndex
            done = true
            if length > limit {
                buffer.moveReaderIndex(to: buffer.writerIndex)
                context.fireChannelRead(wrapInboundOut(.tooLong))
            } else {
                let line = buffer.readSlice(length: length)!
                buffer.moveReaderIndex(forwardBy: 1)
                context.fireChannelRead(wrapInboundOut(.line(line)))
            }
            return .continue
        }
        if buffer.readableBytes > limit {
            done = true
            buffer.moveReaderIndex(to: buffer.writerIndex)
            context.fireChannelRead(wrapInboundOut(.tooLong))
        }
        return .needMoreData
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        if !done {
            done = true
            buffer.moveReaderIndex(to: buffer.writerIndex)
            context.fireChannelRead(wrapInboundOut(.truncated))
        }
        return .needMoreData
    }
}
