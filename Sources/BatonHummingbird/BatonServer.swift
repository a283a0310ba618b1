import Baton
import BatonNIO
import HummingbirdCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle

/// Settings of a ``BatonServer``: the drain settings every Baton adapter shares.
public typealias BatonServerConfiguration = DrainConfiguration

/// Serves a Hummingbird child channel on the listeners a Baton master passed to this worker,
/// reports readiness, and drains on graceful shutdown (SIGTERM).
///
/// Connections are accepted by an ``Acceptor`` per listener and served by NIO. Each gets the
/// drain handler of the protocol its pipeline speaks (``DrainHandlers``): HTTP/1 connections are
/// handed to the next generation or closed gracefully (``ConnectionDrainHandler``), HTTP/2
/// connections get the two-step GOAWAY (``HTTP2DrainHandler``); under TLS neither is handed over,
/// and closes go through TLS (``TLSActivityHandler``). The drain: stop accepting (new
/// connections stay in the shared kernel queue for the next generation); send `STOPPING=1`; tell
/// every connection to finish; wait until the last one has closed, or until
/// ``BatonServerConfiguration/drainDeadline``.
public final class BatonServer<ChildChannel: ServerChildChannel>: Service, Sendable {
    let childChannel: ChildChannel
    let worker: BatonWorker
    let configuration: BatonServerConfiguration
    let eventLoopGroup: any EventLoopGroup
    let logger: Logger

    /// Serves `childChannel` on the listeners of `worker`.
    public init(childChannel: ChildChannel, worker: BatonWorker, configuration: BatonServerConfiguration = .init(),
                eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger) {
        self.childChannel = childChannel
        self.worker = worker
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
    }

    /// How many task groups serve the connections. The Swift runtime unlinks a finished child
    /// task from its group by walking the group's list of children, so with thousands of
    /// connections in one group every close costs thousands of steps: handing 4,096 connections
    /// over spent over a fifth of the old generation's CPU in `TaskGroup::removeChildTask`.
    /// Spread over this many groups, each list stays short.
    static var connectionGroups: Int { 64 }

    /// Binds the inherited listeners, reports `READY=1`, serves until graceful shutdown, drains.
    public func run() async throws {
        let shards = (0..<Self.connectionGroups).map { _ in AsyncStream.makeStream(of: ChildChannel.Value.self) }
        let nextShard = NIOLockedValueBox(0)
        let childChannel = self.childChannel
        let logger = self.logger
        let idleGrace = configuration.idleGrace
        let listeners = worker.listeners
        let warned = NIOLockedValueBox(false)
        let connections = try WorkerConnections(worker: worker, eventLoopGroup: eventLoopGroup, logger: logger) { channel in
            childChannel.setup(channel: channel, logger: logger).flatMapThrowing { value in
                // The child channel built the pipeline of its protocol: the drain of that
                // protocol goes into it (DrainHandlers).
                let kind = try DrainHandlers.add(to: channel, idleGrace: idleGrace)
                if kind == .unknown, warned.withLockedValue({ already in defer { already = true }; return !already }) {
                    let listener = (try? channel.pipeline.syncOperations.handler(type: ConnectionSocketHandler.self))?.activity.listener
                    let name = listener.map { listeners[$0].name } ?? "a listener"
                    logger.warning("connections on \(name) have a pipeline Baton has no drain for (neither an HTTP/1 decoder nor NIOHTTP2Handler): at a drain they close only at the drain deadline")
                }
                return value
            }.map { value in
                let shard = nextShard.withLockedValue { next in
                    defer { next = (next + 1) % shards.count }
                    return next
                }
                shards[shard].continuation.yield(value)
            }
        }
        try connections.ready(status: "generation \(worker.generation) serving")
        logger.info("worker generation \(worker.generation) (version \(worker.version)) serving on \(worker.listeners.map(\.name).joined(separator: ", "))")

        let configuration = self.configuration
        await withDiscardingTaskGroup { group in
            group.addTask {
                try? await gracefulShutdown()
                await connections.drain(configuration)
                for shard in shards { shard.continuation.finish() }
            }
            for shard in shards {
                group.addTask {
                    await withDiscardingTaskGroup { served in
                        for await value in shard.stream {
                            served.addTask { await childChannel.handle(value: value, logger: logger) }
                        }
                    }
                }
            }
        }
    }
}

extension BatonServer: CustomStringConvertible {
    public var description: String { "BatonServer" }
}
