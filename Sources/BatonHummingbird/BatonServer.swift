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

/// What the app code serving a connection can learn of its drain (a WebSocket about to be
/// closed): `BatonNIO.BatonDrain.withDrainHandler(_:onDrain:)`.
public typealias BatonDrain = BatonNIO.BatonDrain

/// Serves a Hummingbird child channel on the listeners a Baton master passed to this worker,
/// reports readiness, and drains on graceful shutdown (SIGTERM).
///
/// Connections are accepted by an `Acceptor` per listener and served by NIO. Each gets the
/// drain handler of the protocol its pipeline speaks (`DrainHandlers`): HTTP/1 connections are
/// handed to the next generation or closed gracefully (`ConnectionDrainHandler`), HTTP/2
/// connections get the two-step GOAWAY (`HTTP2DrainHandler`); under TLS neither is handed over,
/// and closes go through TLS (`TLSActivityHandler`). The drain: stop accepting (new
/// connections stay in the shared kernel queue for the next generation); send `STOPPING=1`; tell
/// every connection to finish; wait until the last one has closed, or until
/// `BatonServerConfiguration.drainDeadline`.
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
    ///
    /// The connections are served in tasks of their own, outside this service's graceful
    /// shutdown: Baton drains each connection the way its protocol needs, at its moment of the
    /// drain's spread. Hummingbird's WebSocket handler, under the graceful shutdown, would close
    /// every WebSocket at once with 1000 on SIGTERM. The app code serving a connection learns of
    /// its drain through ``BatonDrain`` instead.
    public func run() async throws {
        typealias Served = (value: ChildChannel.Value, notice: DrainNotice)
        let shards = (0..<Self.connectionGroups).map { _ in AsyncStream.makeStream(of: Served.self) }
        let nextShard = NIOLockedValueBox(0)
        let childChannel = self.childChannel
        let logger = self.logger
        let configuration = self.configuration
        let listeners = worker.listeners
        let warned = NIOLockedValueBox(false)
        let connections = try WorkerConnections(worker: worker, eventLoopGroup: eventLoopGroup, logger: logger) { channel in
            childChannel.setup(channel: channel, logger: logger).flatMapThrowing { value -> Served in
                // The child channel built the pipeline of its protocol: the drain of that
                // protocol goes into it (DrainHandlers).
                let kind = try DrainHandlers.add(to: channel, configuration: configuration)
                let socket = try? channel.pipeline.syncOperations.handler(type: ConnectionSocketHandler.self)
                if kind == .unknown, warned.withLockedValue({ already in defer { already = true }; return !already }) {
                    let name = socket?.activity.listener.map { listeners[$0].name } ?? "a listener"
                    logger.warning("connections on \(name) have a pipeline Baton has no drain for (neither an HTTP/1 decoder nor NIOHTTP2Handler): at a drain they close only at the drain deadline")
                }
                return (value, socket?.activity.drainNotice ?? DrainNotice())
            }.map { served in
                let shard = nextShard.withLockedValue { next in
                    defer { next = (next + 1) % shards.count }
                    return next
                }
                shards[shard].continuation.yield(served)
            }
        }
        try connections.ready(status: "generation \(worker.generation) serving")
        logger.info("worker generation \(worker.generation) (version \(worker.version)) serving on \(worker.listeners.map(\.name).joined(separator: ", "))")

        let serving = shards.map { shard in
            Task.detached {
                await withDiscardingTaskGroup { served in
                    for await connection in shard.stream {
                        served.addTask {
                            await BatonDrain.$notice.withValue(connection.notice) {
                                await childChannel.handle(value: connection.value, logger: logger)
                            }
                        }
                    }
                }
            }
        }
        await withTaskCancellationHandler {
            try? await gracefulShutdown()
            await connections.drain(configuration)
            for shard in shards { shard.continuation.finish() }
            for task in serving { await task.value }
        } onCancel: {
            for task in serving { task.cancel() }
        }
    }
}

extension BatonServer: CustomStringConvertible {
    /// The service's name in ServiceLifecycle's logs.
    public var description: String { "BatonServer" }
}
