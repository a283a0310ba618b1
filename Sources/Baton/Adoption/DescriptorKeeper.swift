#if canImport(Glibc)
import Glibc
#endif
import CBaton

/// The master's side of its keeper (`keeper.c`): a child that holds a copy of every descriptor a
/// successor needs — the listeners, the notify and control sockets, each generation's control
/// channel, connection inbox and pidfd, and the ``MasterRecord`` (a memfd, replaced after every
/// change of state) — so that a master killed outright (SIGKILL, the OOM killer, a crash) loses
/// nothing: the workers keep serving, and the next master started with the same command adopts
/// them through ``Adoption`` (the `adopt.sock` beside the control socket).
///
/// Descriptors are named in the keeper by a name unique across masters (`fd.<master pid>.<n>`,
/// `pid.<worker pid>` for pidfds); the record maps those names to the writer's descriptor
/// numbers (``MasterRecord/descriptorNames``), so a successor, whose numbers differ, can map them.
final class DescriptorKeeper {
    /// The socket a successor connects to.
    let adoptPath: String
    /// How long the keeper (and the workers) wait for a successor after the master died.
    let successorTimeout: Duration
    private(set) var link: Int32
    private(set) var pid: pid_t
    /// Each kept descriptor of this master, by number: its name in the keeper.
    private(set) var names: [Int32: String]
    /// The command the keeper starts again when this master dies outright; nil: it waits for a
    /// successor that someone else starts.
    private(set) var respawn: MasterRespawn?
    private var counter = 0

    private init(adoptPath: String, successorTimeout: Duration, link: Int32, pid: pid_t, names: [Int32: String]) {
        self.adoptPath = adoptPath
        self.successorTimeout = successorTimeout
        self.link = link
        self.pid = pid
        self.names = names
    }

    /// Binds `adoptPath` (0600, in the control socket's 0700 folder) and forks the keeper.
    static func start(adoptPath: String, successorTimeout: Duration) throws -> DescriptorKeeper {
        let (link, keeperPID) = try fork(adoptPath: adoptPath, successorTimeout: successorTimeout)
        return DescriptorKeeper(adoptPath: adoptPath, successorTimeout: successorTimeout, link: link, pid: keeperPID, names: [:])
    }

    /// The keeper a previous master (or image) left: `link` is this master's connection to it,
    /// `names` what it holds under which name, by this process's descriptor numbers.
    static func resume(adoptPath: String, successorTimeout: Duration, link: Int32, pid: pid_t, names: [Int32: String]) -> DescriptorKeeper {
        DescriptorKeeper(adoptPath: adoptPath, successorTimeout: successorTimeout, link: link, pid: pid, names: names)
    }

    private static func fork(adoptPath: String, successorTimeout: Duration) throws -> (link: Int32, pid: pid_t) {
        let adopt = try bindAdoptSocket(adoptPath)
        defer { close(adopt) }  // the keeper's copy is the one that accepts
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw BatonError.errno("socketpair for the keeper")
        }
        let milliseconds = Int32(clamping: successorTimeout.milliseconds)
        let pid = baton_keeper_start(pair[1], adopt, milliseconds)
        close(pair[1])
        guard pid > 0 else {
            close(pair[0])
            throw BatonError.errno("forking the keeper")
        }
        return (pair[0], pid)
    }

    private static func bindAdoptSocket(_ path: String) throws -> Int32 {
        var address = try Adoption.socketAddress(path)
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw BatonError.errno("socket for \(path)") }
        let previous = umask(0o177)  // created 0600
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        umask(previous)
        guard bound == 0, listen(fd, 16) == 0 else {
            let error = BatonError.errno("binding \(path)")
            close(fd)
            throw error
        }
        return fd
    }

    /// Keeps a copy of `fd` (a pidfd when `pidOf` is given).
    func put(_ fd: Int32, pidOf worker: pid_t? = nil) {
        guard fd >= 0 else { return }
        let name: String
        if let worker {
            name = "pid.\(worker)"
        } else {
            counter += 1
            name = "fd.\(getpid()).\(counter)"
        }
        names[fd] = name
        send("put \(name)", fd)
    }

    /// Drops the keeper's copy of `fd` (call before closing it).
    func remove(_ fd: Int32) {
        guard let name = names.removeValue(forKey: fd) else { return }
        send("del \(name)", -1)
    }

    /// Waits, at most `timeout`, until the keeper has carried out every message sent before
    /// (it reads them in order and echoes this one): after ``remove(_:)`` its copy is closed.
    /// False when it did not answer in time (stopped, killed, or a keeper of an older release).
    func flush(timeout: Duration = .seconds(1)) -> Bool {
        let token = "sync \(UInt64.random(in: 1...UInt64.max))"
        guard send(token, -1) else { return false }
        let deadline = ContinuousClock.now + timeout
        var buffer = [UInt8](repeating: 0, count: 64)
        while true {
            var fd: Int32 = -1
            let n = buffer.withUnsafeMutableBytes { baton_recv_fd(link, $0.baseAddress, $0.count, &fd) }
            if fd >= 0 { close(fd) }
            if n > 0 {
                // Else the late echo of an earlier flush that gave up.
                if String(decoding: buffer[..<n], as: UTF8.self) == token { return true }
                continue
            }
            guard n < 0, errno == EAGAIN || errno == EINTR else { return false }  // 0: the keeper is gone
            let left = ContinuousClock.now.duration(to: deadline)
            guard left > .zero else { return false }
            var entry = pollfd(fd: link, events: Int16(POLLIN), revents: 0)
            _ = Glibc.poll(&entry, 1, Int32(clamping: max(1, left.milliseconds)))
        }
    }

    /// Makes the keeper hold exactly `plain` and `pidfds` (each with its worker's pid).
    func sync(plain: Set<Int32>, pidfds: [Int32: pid_t]) {
        for fd in names.keys where !plain.contains(fd) && pidfds[fd] == nil { remove(fd) }
        for fd in plain where names[fd] == nil { put(fd) }
        for (fd, worker) in pidfds where names[fd] == nil { put(fd, pidOf: worker) }
    }

    /// Replaces the record the keeper holds (a new memfd each time: the keeper swaps it in one
    /// step, so a master killed while writing leaves the previous record whole).
    func keep(_ record: MasterRecord) throws {
        let memfd = try record.writeToMemfd()
        defer { close(memfd) }
        guard send("put record", memfd) else { throw BatonError.errno("handing the record to the keeper (pid \(pid))") }
    }

    /// Gives the keeper the command to start again if this master dies outright (nil takes it
    /// back: a master started without `--respawn-master` adopting from one started with it).
    func setRespawn(_ command: MasterRespawn?) throws {
        respawn = command
        try sendRespawn()
    }

    private func sendRespawn() throws {
        guard let respawn else {
            guard send("exec", -1) else { throw BatonError.errno("telling the keeper (pid \(pid)) to start no master") }
            return
        }
        let memfd = try Memfd.holding(respawn.encoded, name: "baton-master-command")
        defer { close(memfd) }
        guard send("exec", memfd) else { throw BatonError.errno("handing the master's command to the keeper (pid \(pid))") }
    }

    /// The master stops cleanly: the keeper exits without waiting for a successor.
    func bye() {
        _ = send("bye", -1)
        close(link)
        unlink(adoptPath)
        var status: Int32 = 0
        _ = baton_wait_exit(pid, 1000, &status)
    }

    /// Whether the keeper still holds the other end (it was not killed).
    var isAlive: Bool {
        baton_peer_closed(link) == 0
    }

    /// A new keeper after this one died (killed by hand): everything is sent to it again.
    func restart() throws {
        close(link)
        var status: Int32 = 0
        _ = baton_wait_exit(pid, 0, &status)
        (link, pid) = try Self.fork(adoptPath: adoptPath, successorTimeout: successorTimeout)
        let held = names
        names = [:]
        for (fd, name) in held {
            names[fd] = name
            send("put \(name)", fd)
        }
        if respawn != nil { try sendRespawn() }
    }

    /// Sends one message, waiting briefly for room (the keeper reads as fast as it can).
    @discardableResult
    private func send(_ text: String, _ fd: Int32) -> Bool {
        let bytes = Array(text.utf8)
        for _ in 0..<200 {
            let sent = bytes.withUnsafeBytes { baton_send_fd(link, $0.baseAddress, $0.count, fd) }
            if sent == bytes.count { return true }
            guard errno == EAGAIN else { return false }
            var poll = pollfd(fd: link, events: Int16(POLLOUT), revents: 0)
            _ = Glibc.poll(&poll, 1, 10)
        }
        return false
    }
}
