import Baton
@preconcurrency import Dispatch
import Logging
import NIOConcurrencyHelpers

/// Follows the master's control channel while the worker lives, for the orders that come
/// outside the drain's start:
/// - ``WorkerOrder``s: `share` to the serving generation and `accept` to the canary of a canary
///   upgrade; `resume` to a draining generation whose successor died;
/// - newer ``DrainOrders`` during a drain: a newer generation became ready while this one still
///   hands connections over, and the rest go to it directly (``ConnectionHandoff/retarget(to:)``)
///   instead of through the generation in between, which drains too;
/// - ``DrainOrders`` after a drain was called off, which start the next drain (`onDrainOrders`).
final class ControlFollower: Sendable {
    private let source: any DispatchSourceRead
    private let control: ControlChannel
    private let handoff = NIOLockedValueBox<ConnectionHandoff?>(nil)
    private let queue: DispatchQueue
    private let generation: Int
    private let logger: Logger

    /// Nil when the worker has no control channel. `onOrder` runs on the follower's queue, and so
    /// does `onDrainOrders`, when drain orders wait that no hand-over takes (they stay there for
    /// the drain to take).
    init?(worker: BatonWorker, logger: Logger, onOrder: @escaping @Sendable (WorkerOrder) -> Void,
          onDrainOrders: @escaping @Sendable () -> Void) {
        guard let control = worker.control else { return nil }
        let queue = DispatchQueue(label: "baton.control")
        let source = DispatchSource.makeReadSource(fileDescriptor: control.fd, queue: queue)
        self.source = source
        self.control = control
        self.queue = queue
        self.generation = worker.generation
        self.logger = logger
        let handoff = self.handoff
        source.setEventHandler { [source] in
            Self.follow(control, handoff: handoff, generation: worker.generation, logger: logger, onOrder: onOrder, onDrainOrders: onDrainOrders)
            if control.ended {  // the master, and its keeper, are gone: nothing more will come
                source.cancel()
                MasterWatch.controlChannelClosed()
            }
        }
        source.resume()
    }

    private static func follow(_ control: ControlChannel, handoff: NIOLockedValueBox<ConnectionHandoff?>, generation: Int, logger: Logger,
                               onOrder: (WorkerOrder) -> Void, onDrainOrders: () -> Void) {
        for order in control.takeWorkerOrders() {
            // Drain orders after a `resume` start the next drain: they must not retarget this one.
            if order == .resume { handoff.withLockedValue { $0 = nil } }
            onOrder(order)
        }
        // Drain orders are the drain's to take until it hands its connections over.
        guard let handoff = handoff.withLockedValue({ $0 }) else {
            if control.hasDrainOrders { onDrainOrders() }
            return
        }
        retarget(handoff, from: control, generation: generation, logger: logger)
    }

    /// Newer drain orders, if any came, point `handoff` at the newer generation's inbox.
    private static func retarget(_ handoff: ConnectionHandoff, from control: ControlChannel, generation: Int, logger: Logger) {
        guard let orders = control.takeDrainOrders(), let inbox = orders.connectionInbox else { return }
        handoff.retarget(to: inbox)
        logger.info("worker generation \(generation): a newer generation is ready; the remaining keep-alive connections go to it directly")
    }

    /// The drain hands connections over through `handoff`: newer drain orders retarget it.
    /// Orders that came since the drain took its own are looked at now.
    func retargeting(_ handoff: ConnectionHandoff) {
        self.handoff.withLockedValue { $0 = handoff }
        let (control, box, generation, logger) = (self.control, self.handoff, self.generation, self.logger)
        queue.async {
            guard let handoff = box.withLockedValue({ $0 }) else { return }
            Self.retarget(handoff, from: control, generation: generation, logger: logger)
        }
    }

    /// The drain was called off: drain orders are no longer a hand-over's.
    func stopRetargeting() {
        handoff.withLockedValue { $0 = nil }
    }

    func stop() { source.cancel() }
}
