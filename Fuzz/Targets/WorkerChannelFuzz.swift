#if DEBUG
@testable import Baton
#if canImport(Glibc)
import Glibc
#endif

extension FuzzTargets {
    /// What a worker reads on its control channel from the master: lines of `DrainOrders` and
    /// `WorkerOrder`s, framed by `ControlChannel` from a real socket.
    static let workerChannel = FuzzTarget(
        name: "worker-channel",
        summary: "control channel bytes (master → worker) through a socket pair → ControlChannel → DrainOrders / WorkerOrder: the orders of the complete lines, no more; every order parses back from its own line; a share order never without its inbox",
        check: checkWorkerChannel)

    /// Stands for an attached descriptor; never used as one (the parsers only carry it along).
    static let fakeDescriptor: Int32 = 1_000_000

    static func checkWorkerChannel(_ bytes: [UInt8]) -> [String] {
        var findings = Findings()
        // Each line on its own, with and without a descriptor attached.
        var expectedDrain: DrainOrders?
        var expectedOthers: [WorkerOrder] = []
        let lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false).dropLast()  // the last has no newline yet
        for bytes in lines {
            let line = Substring(String(lossy: bytes))
            for descriptor in [nil, fakeDescriptor] {
                if line.hasPrefix("drain "), let orders = DrainOrders(parsing: String(line), inbox: descriptor) {
                    findings.expect(orders.sharedListeners.allSatisfy { $0 >= 0 }, "negative listener in \(orders)")
                    findings.expect(orders.deadline.map { $0 >= .zero } ?? true, "negative deadline in \(orders)")
                    findings.expect(orders.connectionInbox == nil || orders.connectionInbox == descriptor, "an inbox that did not come with it")
                    findings.expect(DrainOrders(parsing: orders.line, inbox: descriptor) == orders, "'\(orders.line)' does not parse back to \(orders)")
                    if descriptor == nil { expectedDrain = orders }
                } else if let order = WorkerOrder(parsing: line, descriptor: descriptor) {
                    if case .share(let percent, let inbox) = order {
                        findings.expect((0...100).contains(percent), "share of \(percent)%")
                        findings.expect((percent == 0) == (inbox == nil), "share of \(percent)% with inbox \(String(describing: inbox))")
                    }
                    findings.expect(WorkerOrder(parsing: order.line.dropLast(), descriptor: descriptor) == order, "'\(order.line)' does not parse back")
                    if descriptor == nil { expectedOthers.append(order) }
                }
            }
        }
        // The same bytes through the worker's reader, on a socket as the master writes them.
        guard bytes.count <= 60_000 else { return findings.broken }  // past 64 KiB a line is dropped
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            return findings.broken + ["socketpair failed: errno \(errno)"]
        }
        let written = bytes.withUnsafeBytes { send(pair[1], $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        close(pair[1])
        guard written == bytes.count else {
            close(pair[0])
            return findings.broken + ["wrote \(written) of \(bytes.count) bytes"]
        }
        let channel = ControlChannel(fd: pair[0])
        let others = channel.takeWorkerOrders()
        let drain = channel.takeDrainOrders()
        findings.expect(channel.ended, "the end of the master's writes was not seen")
        findings.expect(others == expectedOthers, "orders \(others), expected \(expectedOthers)")
        findings.expect(drain == expectedDrain, "drain \(String(describing: drain)), expected \(String(describing: expectedDrain))")
        close(pair[0])
        return findings.broken
    }
}
#endif
