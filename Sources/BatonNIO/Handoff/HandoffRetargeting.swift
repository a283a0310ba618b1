import Baton
@preconcurrency import Dispatch
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Follows the master's control channel during a drain: when a newer generation becomes ready
/// while this one still hands connections over, the master sends new ``DrainOrders`` with that
/// generation's inbox, and the rest of the connections go there (``ConnectionHandoff/retarget(to:)``)
/// instead of through the generation in between, which drains too.
final class HandoffRetargeting: Sendable {
    private let source: any DispatchSourceRead

    /// Nil when the worker has no control channel to follow.
    init?(worker: BatonWorker, handoff: ConnectionHandoff, logger: Logger) {
        guard let fd = worker.controlFD else { return nil }
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: DispatchQueue(label: "baton.handoff-retargeting"))
        self.source = source
        source.setEventHandler { [source] in
            var byte: UInt8 = 0
            // The master is gone (end of stream): nothing more will come.
            guard recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) != 0 else { return source.cancel() }
            guard let orders = worker.drainOrders(), let inbox = orders.connectionInbox else { return }
            handoff.retarget(to: inbox)
            logger.info("worker generation \(worker.generation): a newer generation is ready; the remaining keep-alive connections go to it directly")
        }
        source.resume()
    }

    func stop() { source.cancel() }
}
