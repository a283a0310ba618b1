/// The master's listening sockets, by address: bound once and shared by every generation that
/// uses them; closed when no generation uses an address any more (after a port change), and all
/// of them when the master stops, before the last generation takes their queues.
///
/// Sockets handed over by systemd (socket activation) are the service's sockets for good: a
/// plan's own addresses (watch.conf's `HttpPort`) are then not bound.
final class ListenerSet {
    private(set) var bound: [(address: ListenAddress?, listener: Listener)]
    /// What a generation started without its own `listen` gets.
    private(set) var current: [Listener]
    let backlog: Int32

    /// Whether the sockets came from socket activation.
    let adopted: Bool

    init(initial: [(address: ListenAddress?, listener: Listener)], backlog: Int32) {
        self.bound = initial
        self.current = initial.map(\.listener)
        self.backlog = backlog
        self.adopted = !initial.isEmpty && initial.allSatisfy { $0.address == nil }
    }

    /// The listeners a previous image of this master handed over (``MasterRecord``).
    convenience init(adopting record: MasterRecord, backlog: Int32) throws {
        let bound = try record.listeners.map { entry in
            (address: try entry.address.map { try ListenAddress(parsing: $0) }, listener: Listener(fd: entry.fd, name: entry.name))
        }
        self.init(initial: bound, backlog: backlog)
        current = try record.currentListeners.map { fd in
            guard let listener = bound.first(where: { $0.listener.fd == fd })?.listener else {
                throw BatonError.masterHandover("current listener fd \(fd) is not among the handed-over listeners")
            }
            return listener
        }
    }

    /// The listeners for `addresses` (nil, or adopted sockets: the current ones), binding any
    /// address not bound yet.
    func listeners(for addresses: [ListenAddress]?) throws -> [Listener] {
        guard let addresses, !adopted else { return current }
        return try addresses.map { address in
            if let existing = bound.first(where: { $0.address == address }) { return existing.listener }
            let listener = try Listener.bind(address, backlog: backlog)
            bound.append((address, listener))
            return listener
        }
    }

    /// Makes `listeners` the ones new generations get; returns a description of the change, if any.
    func makeCurrent(_ listeners: [Listener]) -> String? {
        guard listeners != current else { return nil }
        let before = current.map(\.name).joined(separator: ", ")
        current = listeners
        return "listeners changed: \(before) → \(listeners.map(\.name).joined(separator: ", "))"
    }

    /// Closes every listener neither current nor used by a live generation; returns their names.
    func closeUnused(inUse: [Listener]) -> [String] {
        let keep = Set(current + inUse)
        let unused = bound.filter { !keep.contains($0.listener) }
        bound.removeAll { !keep.contains($0.listener) }
        for entry in unused { entry.listener.close() }
        return unused.map(\.listener.name)
    }

    /// Closes every listener; none is current after this. Returns those it closed.
    @discardableResult
    func closeAll() -> [Listener] {
        let closed = bound.map(\.listener)
        for listener in closed { listener.close() }
        bound = []
        current = []
        return closed
    }
}
