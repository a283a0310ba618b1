#if canImport(Glibc)
import Glibc
#endif
import CBaton
import NIOConcurrencyHelpers

/// The worker's end of its control channel (`WorkerControl`): reads, without blocking, the
/// orders the master wrote so far, and keeps them until they are taken: ``DrainOrders`` by the
/// drain, ``WorkerOrder``s by whatever follows the channel while the worker lives.
///
/// Each order is one line sent in one `sendmsg`, with at most one descriptor attached. A read
/// of a unix stream socket stops after a message that carries descriptors, so a descriptor
/// belongs to the line the read ended in.
public final class ControlChannel: Sendable {
    /// One order from the master.
    public enum Order: Sendable, Equatable {
        /// The drain line the master writes just before SIGTERM: which queues to leave, the deadline, the
        /// next generation's inbox.
        case drain(DrainOrders)
        /// Any other order (`share`, `accept`, `resume`, `master`), for whatever follows the channel.
        case other(WorkerOrder)
    }

    private struct State {
        var partial: [UInt8] = []
        var partialDescriptor: Int32?
        var orders: [Order] = []
        /// The master closed its end.
        var ended = false
    }

    /// The descriptor (for a read source; read it only through this object).
    public let fd: Int32
    private let state = NIOLockedValueBox(State())

    /// Reads `fd` from now on (owned by the worker for its whole life).
    public init(fd: Int32) {
        self.fd = fd
    }

    /// Whether the master has closed its end (it exited): nothing more will come.
    public var ended: Bool { state.withLockedValue { $0.ended } }

    /// Takes the drain orders received so far: the last one counts (a later one names a newer
    /// generation's inbox); the descriptors of earlier ones are closed.
    public func takeDrainOrders() -> DrainOrders? {
        var last: DrainOrders?
        for case .drain(let orders) in take(where: { if case .drain = $0 { return true } else { return false } }) {
            if let earlier = last?.connectionInbox { close(earlier) }
            last = orders
        }
        return last
    }

    /// Takes the ``WorkerOrder``s received so far (every order but the drain's), oldest first.
    public func takeWorkerOrders() -> [WorkerOrder] {
        take(where: { if case .other = $0 { return true } else { return false } }).compactMap {
            if case .other(let order) = $0 { return order } else { return nil }
        }
    }

    /// Whether drain orders have come (they stay until ``takeDrainOrders()``).
    public var hasDrainOrders: Bool {
        state.withLockedValue { state in
            Self.read(fd, into: &state)
            return state.orders.contains { if case .drain = $0 { return true } else { return false } }
        }
    }

    private func take(where matches: (Order) -> Bool) -> [Order] {
        state.withLockedValue { state in
            Self.read(fd, into: &state)
            let taken = state.orders.filter(matches)
            state.orders.removeAll(where: matches)
            return taken
        }
    }

    private static func read(_ fd: Int32, into state: inout State) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !state.ended {
            var descriptor: Int32 = -1
            let n = buffer.withUnsafeMutableBytes { baton_recv_fd(fd, $0.baseAddress, $0.count, &descriptor) }
            if n == 0 { state.ended = true }
            guard n > 0 else {
                if descriptor >= 0 { close(descriptor) }
                return
            }
            let chunk = buffer[0..<n]
            if descriptor >= 0, let lastNewline = chunk.dropLast().lastIndex(of: 0x0A) {
                // The lines before the one the descriptor belongs to.
                state.partial += chunk[...lastNewline]
                Self.completeLines(&state)
                state.partial += chunk[(lastNewline + 1)...]
            } else {
                state.partial += chunk
            }
            if descriptor >= 0 {
                if let stray = state.partialDescriptor { close(stray) }
                state.partialDescriptor = descriptor
            }
            Self.completeLines(&state)
            if state.partial.count > 65536 {  // no line is that long: drop it rather than grow
                state.partial = []
            }
        }
    }

    /// Turns every complete line of `state.partial` into an order; the pending descriptor goes
    /// to the first of them (the line that was in progress when it came).
    private static func completeLines(_ state: inout State) {
        while let newline = state.partial.firstIndex(of: 0x0A) {
            let line = Substring(decoding: state.partial[..<newline], as: UTF8.self)
            state.partial.removeSubrange(...newline)
            let descriptor = state.partialDescriptor
            state.partialDescriptor = nil
            var used = false
            if line.hasPrefix("drain "), let orders = DrainOrders(parsing: String(line), inbox: descriptor) {
                used = orders.connectionInbox != nil
                state.orders.append(.drain(orders))
            } else if let order = WorkerOrder(parsing: line, descriptor: descriptor) {
                if case .share(_, let inbox?) = order { used = inbox == descriptor }
                if case .master = order { used = true }
                state.orders.append(.other(order))
            }
            if let descriptor, !used { close(descriptor) }
        }
    }
}
