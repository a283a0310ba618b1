#if canImport(Glibc)
import Glibc
#endif

// A record read by an adopting master names the descriptors by the dead master's numbers; the
// keeper handed them over under their names, at new numbers.
extension MasterRecord {
    /// This record with every descriptor renumbered to what `kit` (name → this process's
    /// descriptor) holds under the name the writer gave it. A generation whose control channel
    /// did not come is left out; its number is among `lost`. Throws when a listener or the
    /// notify socket did not come: without them nothing can be adopted (a draining generation's
    /// sockets the writer had closed already are left out of it instead).
    func renumbered(by kit: [String: Int32]) throws -> (record: MasterRecord, lost: [Int]) {
        guard let names = keeper?.names else { throw BatonError.masterHandover("the record names no kept descriptor") }
        var old: [Int32: Int32] = [:]
        for (name, fd) in names { if let new = kit[name] { old[fd] = new } }
        func required(_ fd: Int32, _ what: String) throws -> Int32 {
            guard let new = old[fd] else { throw BatonError.masterHandover("the keeper did not hand over \(what) (fd \(fd) of the dead master)") }
            return new
        }
        var record = self
        record.listeners = try listeners.map { entry in
            var entry = entry
            entry.fd = try required(entry.fd, "listener \(entry.name)")
            return entry
        }
        record.currentListeners = try currentListeners.map { try required($0, "a current listener") }
        record.notify.fd = try required(notify.fd, "the notify socket")
        record.control = control.flatMap { socket in old[socket.fd].map { Socket(fd: $0, path: socket.path) } }
        var lost: [Int] = []
        record.generations = try generations.compactMap { entry in
            guard let control = old[entry.control] else {
                lost.append(entry.number)
                return nil
            }
            var entry = entry
            entry.control = control
            entry.inbox = entry.inbox.flatMap { old[$0] }
            entry.pidfd = entry.pidfd.flatMap { old[$0] }
            // A drainer's socket the master had closed (an old port, every socket at a stop) was
            // taken from the keeper too: it accepts there no more, and is left out.
            let draining = entry.state == Generation.State.draining.rawValue || entry.state == Generation.State.abandoned.rawValue
            entry.listeners = try entry.listeners.filter { fd in !draining || listeners.contains { $0.fd == fd } }
                .map { try required($0, "a listener of generation \(entry.number)") }
            return entry
        }
        record.keeper = nil
        return (record, lost)
    }
}
