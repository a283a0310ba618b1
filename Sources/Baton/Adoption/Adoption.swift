#if canImport(Glibc)
import Glibc
#endif
import CBaton

/// A master's first question at start: is there a keeper (``DescriptorKeeper``) at `adopt.sock`
/// whose master died? Then it hands over everything it held, and this master adopts the running
/// workers instead of binding and starting afresh.
enum Adoption {
    /// What answered at the adopt socket.
    enum Answer: Equatable {
        /// No keeper: start afresh.
        case nobody
        /// A master runs here already.
        case masterAlive(pid_t)
        /// An orphaned keeper handed over its descriptors, by name; `link` is this master's
        /// connection to it from now on.
        case kit(link: Int32, descriptors: [String: Int32])
    }

    /// Where the adopt socket of the master with control socket `controlPath` lies.
    static func socketPath(besideControlSocket controlPath: String) -> String {
        let base = controlPath.hasSuffix(".sock") ? String(controlPath.dropLast(5)) : controlPath
        return base + ".adopt.sock"
    }

    /// Asks the keeper at `path`, waiting at most `timeout` for each of its messages.
    static func ask(at path: String, timeout: Duration = .seconds(2)) throws -> Answer {
        var address = try socketAddress(path)
        let fd = socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw BatonError.errno("socket for \(path)") }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else {
            let code = errno
            close(fd)
            if code == ENOENT || code == ECONNREFUSED { return .nobody }
            throw BatonError.system("connecting to \(path)", code)
        }
        var received: [String: Int32] = [:]
        do {
            let (first, _) = try receive(fd, timeout: timeout, what: "the keeper's first answer")
            let words = first.split(separator: " ")
            if words.count == 2, words[0] == "alive", let pid = pid_t(words[1]) {
                close(fd)
                return .masterAlive(pid)
            }
            guard words.count == 2, words[0] == "kit", let count = Int(words[1]), (0...4096).contains(count) else {
                throw BatonError.masterHandover("the keeper at \(path) said '\(first.prefix(80))', neither 'alive PID' nor 'kit N'")
            }
            for _ in 0..<count {
                let (name, descriptor) = try receive(fd, timeout: timeout, what: "the keeper's descriptors")
                guard let descriptor else { throw BatonError.masterHandover("the keeper sent '\(name.prefix(80))' without its descriptor") }
                if let duplicate = received.updateValue(descriptor, forKey: name) { close(duplicate) }
            }
            return .kit(link: fd, descriptors: received)
        } catch {
            for descriptor in received.values { close(descriptor) }
            close(fd)
            throw error
        }
    }

    /// The address of the adopt socket at `path` (bound by the keeper's master, connected to by a
    /// successor).
    static func socketAddress(_ path: String) throws -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw BatonError.system("\(path) is too long for a unix socket", ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        return address
    }

    private static func receive(_ fd: Int32, timeout: Duration, what: String) throws -> (String, Int32?) {
        var poll = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard Glibc.poll(&poll, 1, Int32(clamping: timeout.milliseconds)) == 1 else {
            throw BatonError.masterHandover("no answer from the keeper within \(timeout.shortDescription) (\(what))")
        }
        var buffer = [UInt8](repeating: 0, count: 256)
        var descriptor: Int32 = -1
        let count = buffer.withUnsafeMutableBytes { baton_recv_fd(fd, $0.baseAddress, $0.count, &descriptor) }
        guard count > 0 else { throw BatonError.masterHandover("the keeper closed the connection (\(what))") }
        return (String(decoding: buffer[0..<count], as: UTF8.self), descriptor >= 0 ? descriptor : nil)
    }
}
