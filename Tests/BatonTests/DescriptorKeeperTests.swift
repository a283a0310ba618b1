import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif
import CBaton
@testable import Baton

/// The keeper (a forked process running keeper.c) with the master's side and a successor's side
/// of its protocol, without a master: this test process plays both.
final class DescriptorKeeperTests: XCTestCase {
    private var folder = ""

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("keeper-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: folder)
    }

    /// What arrives through `received` comes out of `pipe`'s read end: the same pipe.
    private func isSamePipe(_ received: Int32, readEnd: Int32) -> Bool {
        guard write(received, "x", 1) == 1 else { return false }
        var byte: UInt8 = 0
        return read(readEnd, &byte, 1) == 1 && byte == UInt8(ascii: "x")
    }

    func testWhileTheMasterLivesASuccessorIsToldSoAndAfterItDiesGetsEverything() throws {
        let path = "\(folder)/app.adopt.sock"
        XCTAssertEqual(try Adoption.ask(at: path), .nobody, "no keeper yet")
        let keeper = try DescriptorKeeper.start(adoptPath: path, successorTimeout: .seconds(10))
        defer { kill(keeper.pid, SIGKILL) }
        var info = stat()
        XCTAssertEqual(stat(path, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o600, "the adopt socket is the owner's only")
        var pipe: [Int32] = [-1, -1]
        XCTAssertEqual(Glibc.pipe(&pipe), 0)
        defer { close(pipe[0]) }
        keeper.sync(plain: [pipe[1]], pidfds: [:])
        close(pipe[1])  // only the keeper holds the write end now

        XCTAssertEqual(try Adoption.ask(at: path), .masterAlive(getpid()))

        close(keeper.link)  // the master dies without a word
        guard case .kit(let link, let kit) = try Adoption.ask(at: path) else { return XCTFail("no kit after the master's death") }
        defer { close(link) }
        XCTAssertEqual(baton_peer_pid(link), keeper.pid, "the successor's SO_PEERCRED names the keeper, not the master that bound the socket")
        XCTAssertEqual(Array(kit.keys), ["fd.\(getpid()).1"])
        let received = try XCTUnwrap(kit.values.first)
        defer { close(received) }
        XCTAssertTrue(isSamePipe(received, readEnd: pipe[0]))
        XCTAssertEqual(try Adoption.ask(at: path), .masterAlive(getpid()), "the connection that took the kit is the new master")
    }

    /// Removed descriptors are not handed over; a new record replaces the old one.
    func testRemovedDescriptorsAreLetGoAndTheLastRecordCounts() throws {
        let path = "\(folder)/app.adopt.sock"
        let keeper = try DescriptorKeeper.start(adoptPath: path, successorTimeout: .seconds(10))
        defer { kill(keeper.pid, SIGKILL) }
        var pipes: [[Int32]] = []
        for _ in 0..<3 {
            var pipe: [Int32] = [-1, -1]
            XCTAssertEqual(Glibc.pipe(&pipe), 0)
            pipes.append(pipe)
        }
        keeper.sync(plain: Set(pipes.map { $0[1] }), pidfds: [:])
        keeper.sync(plain: [pipes[0][1], pipes[2][1]], pidfds: [:])
        var record = MasterRecord(writtenAt: 1, image: .init(path: "/a", arguments: [], executions: 0, processAge: 0), listeners: [],
                                  currentListeners: [], notify: .init(fd: 3, path: "@n"), control: nil, generations: [], nextNumber: 1,
                                  currentPlan: nil, previousPlan: nil, consecutiveFailures: 0, lastUpgrade: nil)
        try keeper.keep(record)
        record.nextNumber = 9
        try keeper.keep(record)
        close(keeper.link)
        guard case .kit(let link, let kit) = try Adoption.ask(at: path) else { return XCTFail("no kit") }
        defer { close(link); for fd in kit.values { close(fd) } }
        XCTAssertEqual(kit.count, 3, "two pipes and the record: \(kit.keys.sorted())")
        let recordFD = try XCTUnwrap(kit["record"])
        lseek(recordFD, 0, SEEK_SET)
        XCTAssertEqual(try MasterRecord.read(from: recordFD).nextNumber, 9)
        for pipe in pipes { close(pipe[0]); close(pipe[1]) }
    }

    /// A listening socket on 127.0.0.1 (port chosen by the kernel) and its port.
    private func tcpListener() throws -> (fd: Int32, port: UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && listen(fd, 16) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard fd >= 0, bound else { throw BatonError.errno("a listener on 127.0.0.1") }
        return (fd, UInt16(bigEndian: address.sin_port))
    }

    /// connect(2) to 127.0.0.1:`port`: 0, or the errno.
    private func connectError(port: UInt16) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = port.bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        return connected == 0 ? 0 : errno
    }

    /// Once `flush` returns, every `remove` before it is done: a listener the master closed and
    /// the keeper let go of refuses connections (none queue where nobody will accept them).
    /// A flush that gives up (the keeper stopped) says so, and its late echo does not answer
    /// the next one.
    func testAFlushReturnsOnceTheKeeperLetGoOfWhatWasRemoved() throws {
        let path = "\(folder)/app.adopt.sock"
        let keeper = try DescriptorKeeper.start(adoptPath: path, successorTimeout: .seconds(10))
        defer { kill(keeper.pid, SIGKILL) }
        let (listener, port) = try tcpListener()
        keeper.sync(plain: [listener], pidfds: [:])
        XCTAssertTrue(keeper.flush())
        close(listener)
        XCTAssertEqual(connectError(port: port), 0, "the keeper's copy still listens")
        keeper.remove(listener)
        XCTAssertTrue(keeper.flush(), "the keeper did not answer")
        XCTAssertEqual(connectError(port: port), ECONNREFUSED, "the keeper still held the listener after the flush")

        kill(keeper.pid, SIGSTOP)
        let start = ContinuousClock.now
        XCTAssertFalse(keeper.flush(timeout: .milliseconds(200)), "a stopped keeper cannot have answered")
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - start, .milliseconds(200))
        kill(keeper.pid, SIGCONT)
        XCTAssertTrue(keeper.flush(), "the late echo of the flush that gave up is not this one's answer, and this one comes")

        kill(keeper.pid, SIGKILL)
        var status: Int32 = 0
        _ = baton_wait_exit(keeper.pid, 5000, &status)
        XCTAssertFalse(keeper.flush(), "no keeper, no answer")
    }

    /// No successor within the timeout: every worker it holds a pidfd of gets SIGTERM, and the
    /// keeper exits.
    func testWithoutASuccessorTheWorkersAreToldToDrain() throws {
        let path = "\(folder)/app.adopt.sock"
        let keeper = try DescriptorKeeper.start(adoptPath: path, successorTimeout: .milliseconds(200))
        defer { kill(keeper.pid, SIGKILL) }
        let worker = Process()
        worker.executableURL = URL(fileURLWithPath: "/bin/sleep")
        worker.arguments = ["30"]
        try worker.run()
        defer { if worker.isRunning { kill(worker.processIdentifier, SIGKILL) } }
        let pidfd = baton_pidfd_open(worker.processIdentifier)
        XCTAssertGreaterThanOrEqual(pidfd, 0)
        keeper.sync(plain: [], pidfds: [pidfd: worker.processIdentifier])
        close(pidfd)
        close(keeper.link)
        worker.waitUntilExit()
        XCTAssertEqual(worker.terminationReason, .uncaughtSignal)
        XCTAssertEqual(worker.terminationStatus, SIGTERM)
        var status: Int32 = 0
        XCTAssertEqual(baton_wait_exit(keeper.pid, 5000, &status) == ETIMEDOUT, false, "the keeper did not exit")
    }

    func testACleanStopEndsTheKeeperAndRemovesItsSocket() throws {
        let path = "\(folder)/app.adopt.sock"
        let keeper = try DescriptorKeeper.start(adoptPath: path, successorTimeout: .seconds(10))
        let pid = keeper.pid
        keeper.bye()
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
        XCTAssertEqual(kill(pid, 0), -1, "keeper \(pid) still runs (or was not reaped) after bye")
    }

    /// Given the master's command (`--respawn-master`), the keeper starts it again when the
    /// master dies: in the master's folder, with its arguments and environment, default signal
    /// actions, no descriptor but stdin/out/err, and not as the keeper's child. At most 5 times
    /// within 30 s: a master that dies as soon as it adopts is not started forever.
    func testTheKeeperStartsTheMastersCommandAgainAtMostFiveTimesIn30Seconds() throws {
        let path = "\(folder)/app.adopt.sock"
        let work = "\(folder)/work"
        let out = "\(folder)/started"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let keeper = try DescriptorKeeper.start(adoptPath: path, successorTimeout: .seconds(10))
        defer { kill(keeper.pid, SIGKILL) }
        var pipe: [Int32] = [-1, -1]
        XCTAssertEqual(Glibc.pipe(&pipe), 0)
        defer { close(pipe[0]) }
        keeper.sync(plain: [pipe[1]], pidfds: [:])  // held by the keeper: must not reach the command
        close(pipe[1])
        // The first start becomes `sleep` (exec: the same pid), whose signal state and descriptors
        // are read here: what the keeper's exec gave, not what the shell does while it waits.
        let script = #"""
            printf '%s|%s|%s|%s|%s\n' "$$" "$PPID" "$(pwd)" "$BATON_TEST_MARK" "$0" >> "$OUT"
            if [ ! -e "$OUT.first" ]; then : > "$OUT.first"; exec sleep 30; fi
            """#
        try keeper.setRespawn(MasterRespawn(path: "/bin/sh", folder: work, arguments: ["sh", "-c", script, "first-arg"],
                                            environment: ["OUT": out, "BATON_TEST_MARK": "kept", "PATH": "/usr/bin:/bin"]))
        func started() -> [[String]] {
            ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").split(separator: "\n").map { $0.split(separator: "|", omittingEmptySubsequences: false).map(String.init) }
        }
        func waitFor(_ count: Int) -> Bool {
            let deadline = Date().addingTimeInterval(10)
            while started().count < count && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
            return started().count == count
        }

        close(keeper.link)  // the master dies without a word
        XCTAssertTrue(waitFor(1), "the keeper did not start the command: \(started())")
        let first = try XCTUnwrap(started().first)
        let pid = try XCTUnwrap(pid_t(first[0]))
        defer { kill(pid, SIGKILL) }
        XCTAssertEqual(Array(first.dropFirst(2)), [work, "kept", "first-arg"], "folder, environment, arguments")
        XCTAssertNotEqual(pid_t(first[1]), keeper.pid, "the command is the keeper's child")
        let deadline = Date().addingTimeInterval(10)
        while (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) != "sleep\n" && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(status.filter { $0.hasPrefix("SigBlk") || $0.hasPrefix("SigIgn") },
                       ["SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000"], "signals blocked or ignored in the command")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").sorted(), ["0", "1", "2"],
                       "descriptors leaked into the command")

        // Each successor adopts and dies at once: 5 starts in all, then the keeper stops starting it.
        for death in 2...6 {
            var adopted: (link: Int32, kit: [String: Int32])?
            let deadline = Date().addingTimeInterval(5)
            while adopted == nil && Date() < deadline {
                if case .kit(let link, let kit) = try Adoption.ask(at: path) { adopted = (link, kit) } else { Thread.sleep(forTimeInterval: 0.02) }
            }
            let successor = try XCTUnwrap(adopted, "death \(death): no kit for a successor")
            for fd in successor.kit.values { close(fd) }
            close(successor.link)
            if death <= 5 { XCTAssertTrue(waitFor(death), "death \(death): not started again (\(started().count) starts)") }
        }
        Thread.sleep(forTimeInterval: 0.5)
        XCTAssertEqual(started().count, 5, "the keeper went on starting a master that dies at once")
        guard case .kit(let link, let kit) = try Adoption.ask(at: path) else { return XCTFail("the keeper no longer waits for a successor") }
        for fd in kit.values { close(fd) }
        close(link)
    }
}
