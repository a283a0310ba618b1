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
    private let channel: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>

    private init(path: String, channel: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>) {
        self.path = path
        self.channel = channel
    }

    /// Binds the socket, replacing a stale one, with permissions set before anyone can connect.
    static func bind(path: String) async throws -> ControlServer {
        let folder = ConfigWatcher.split(path).folder
        if mkdir(folder, 0o700) != 0 && errno != EEXIST { throw BatonError.errno("creating \(folder)") }
        var info = stat()
        guard lstat(folder, &info) == 0, info.st_mode & S_IFMT == S_IFDIR, info.st_uid == geteuid() else {
            throw BatonError.system("\(folder) must be a folder owned by this user", EPERM)
        }
        if info.st_mode & 0o022 != 0 { chmod(folder, 0o700) }
        // A socket file left by a master that died: remove it, unless a master still answers.
        if access(path, F_OK) == 0 {
            if (try? await ControlClient.send(.init(command: "status"), to: path, timeout: .seconds(1))) != nil {
                throw BatonError.system("another master is running with control socket \(path)", EADDRINUSE)
            }
            unlink(path)
        }
        let previous = umask(0o177)  // the socket file is created 0600
        defer { umask(previous) }
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(unixDomainSocketPath: path) { child in
                child.eventLoop.makeCompletedFuture {
                    try child.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(LineBasedFrameDecoder()))
                    return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: child)
                }
            }
        chmod(path, 0o600)
        return ControlServer(path: path, channel: channel)
    }

    /// Answers connections until cancelled, with `handle` for each request.
    func serve(logger: Logger, handle: @escaping @Sendable (ControlProtocol.Request) async -> ControlProtocol.Response) async {
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

    private static func answer(_ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>, logger: Logger,
                               handle: @Sendable (ControlProtocol.Request) async -> ControlProtocol.Response) async {
        try? await connection.executeThenClose { inbound, outbound in
            var lines = inbound.makeAsyncIterator()
            guard let line = try await lines.next() else { return }
            let response: ControlProtocol.Response
            if line.readableBytes > ControlProtocol.maxRequestBytes {
                response = .init(ok: false, message: "request too long (at most \(ControlProtocol.maxRequestBytes) bytes)")
            } else if let request = try? JSONDecoder().decode(ControlProtocol.Request.self, from: Data(line.readableBytesView)) {
                if request.command == "status" { logger.debug("control: status") } else { logger.info("control: \(request.command)") }
                response = await handle(request)
            } else {
                response = .init(ok: false, message: #"malformed request: expected one JSON line like {"command":"status"}"#)
            }
            try await outbound.write(ByteBuffer(bytes: ControlProtocol.encode(response)))
        }
    }
}
