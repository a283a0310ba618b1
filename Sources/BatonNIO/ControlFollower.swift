import Baton
@preconcurrency import Dispatch
import Logging
import NIOConcurrencyHelpers

/// Follows the master's control channel while the worker lives, for the orders that come
/// outside the drain's start:
/// - ``CanaryOrder``s (a canary upgrade): `share` to the serving generation, `accept` to the canary;
/// - newer ``DrainOrders`` during a drain: a newer generation became ready while this one still
///   hands connections over, and the rest go to it directly (``ConnectionHandoff/retarget(to:)``)
///   instead of through the generation in between, which drains too.
final class ControlFollower: Sendable {
    private let source: any DispatchSourceRead
    private let control: ControlChannel
    private let handoff = NIOLockedValueBox<ConnectionHandoff?>(nil)
    private let queue: DispatchQueue

    /// Nil when the worker has no control channel. `onOrder` runs on the follower's queue.
    init?(worker: BatonWorker, logger: Logger, onOrder: @escaping @Sendable (CanaryOrder) -> Void) {
        guard let control = worker.control else { return nil }
        let queue = DispatchQueue(label: "baton.control")
        let source = DispatchSource.makeReadSource(fileDescriptor: control.fd, queue: queue)
        self.source = source
        self.control = control
        self.queue = queue
        let handoff = self.handoff
        source.setEventHandler { [source] in
            Self.follow(control, handoff: handoff, generation: worker.generation, logger: logger, onOrder: onOrder)
            if control.ended { source.cancel() }  // the master is gone: nothing more will come
        }
        source.resume()
    }

    private static func follow(_ control: ControlChannel, handoff: NIOLockedValueBox<ConnectionHandoff?>, generation: Int, logger: Logger,
                               onOrder: (CanaryOrder) -> Void) {
        for order in control.takeCanaryOrders() { onOrder(order) }
        // Drain orders are the drain's to take until it hands its connections over.
        guard let handoff = handoff.withLockedValue({ $0 }), let orders = control.takeDrainOrders() else { return }
        guard let inbox = orders.connectionInbox else { return }
        handoff.retarget(to: inbox)
        logger.info("worker generation \(generation): a newer generation is ready; the remaining keep-alive connections go to it directly")
    }

    /// The drain hands connections over through `handoff`: newer drain orders retarget it.
    /// Orders that came since the drain took its own are looked at now.
    func retargeting(_ handoff: ConnectionHandoff) {
        self.handoff.withLockedValue { $0 = handoff }
        let control = self.control
        let box = self.handoff
        queue.async {
            guard let handoff = box.withLockedValue({ $0 }), let orders = control.takeDrainOrders(), let inbox = orders.connectionInbox else { return }
            handoff.retarget(to: inbox)
        }
    }

    func stop() { source.cancel() }
}
