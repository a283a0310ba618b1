#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NIOCore
import NIOExtras
import NIOPosix

/// Sends one request to a master's control socket and returns its answer.
package enum ControlClient {
    /// Why no answer came.
    package enum Failure: Error, CustomStringConvertible {
        case noMaster(String, String)
        case noAnswer(String)

        package var description: String {
            switch self {
            case .noMaster(let path, let why): return "no master answers at \(path): \(why)"
            case .noAnswer(let path): return "the master at \(path) closed the connection without an answer"
            }
        }
    }

    /// Sends `request` to the socket at `path` and waits at most `timeout` for the answer.
    package static func send(_ request: ControlProtocol.Request, to path: String, timeout: Duration) async throws -> ControlProtocol.Response {
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(unixDomainSocketPath: path) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineBasedFrameDecoder()))
                        return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch let error as IOError {
            // NIO's own description ("connect(descriptor:addr:size:): … (errno: 2)") reads badly.
            throw Failure.noMaster(path, "connect: \(String(cString: strerror(error.errnoCode))) (errno \(error.errnoCode))")
        } catch {
            throw Failure.noMaster(path, "\(error)")
        }
        return try await withThrowingTaskGroup(of: ControlProtocol.Response?.self) { group in
            group.addTask {
                try await channel.executeThenClose { inbound, outbound in
                    try await outbound.write(ByteBuffer(bytes: ControlProtocol.encode(request)))
                    var lines = inbound.makeAsyncIterator()
                    guard let line = try await lines.next() else { throw Failure.noAnswer(path) }
                    return try JSONDecoder().decode(ControlProtocol.Response.self, from: Data(line.readableBytesView))
                }
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            let first = try await group.next()!
            group.cancelAll()
            if first == nil { channel.channel.close(promise: nil) }
            guard let response = first else { throw Failure.noMaster(path, "no answer within \(timeout)") }
            return response
        }
    }
}
