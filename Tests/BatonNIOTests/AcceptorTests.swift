import Baton
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import BatonNIO

/// What a stopping generation does with the connections queued on its listener: leave them to
/// the generation that shares the socket, or take them when it is the socket's last user.
final class AcceptorTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private var listener: Listener!
    private let registry = ConnectionRegistry()
    private var clients: [Int32] = []

    override func setUpWithError() throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        listener = try Listener.bind(.tcp(host: "127.0.0.1", port: 0))
    }

    override func tearDown() async throws {
        registry.closeAll()
        for fd in clients { close(fd) }
        listener.close()
        try await group.shutdownGracefully()
    }

    /// An acceptor on its own copy of the listener (it closes that copy when it stops; the test's
    /// copy keeps the socket, as the other generation's would).
    private func makeAcceptor() throws -> Acceptor {
        let copy = Listener(fd: fcntl(listener.fd, F_DUPFD_CLOEXEC, 3), name: listener.name)
        let adopter = ConnectionAdopter(group: group, registry: registry, logger: Logger(label: "test")) {
            channel in channel.eventLoop.makeSucceededVoidFuture()
        }
        return try Acceptor(listener: copy, index: 0, adopter: adopter, logger: Logger(label: "test"))
    }

    private func connectClients(_ count: Int) throws {
        let port = try XCTUnwrap(listener.port)
        for _ in 0..<count {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            let rc = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            XCTAssertEqual(rc, 0, "connect: errno \(errno)")
            clients.append(fd)
        }
    }

    /// Connections the kernel holds in the listener's queue, taken out by the test.
    private func drainQueueByHand() throws -> Int {
        var taken = 0
        while let fd = try listener.acceptConnection() {
            close(fd)
            taken += 1
        }
        return taken
    }

    func testAStoppedGenerationThatSharesItsSocketTakesNothingMore() async throws {
        let acceptor = try makeAcceptor()
        await acceptor.stop(takeQueued: false)
        try connectClients(3)
        try await Task.sleep(for: .milliseconds(100))
        XCTAssertEqual(registry.openCount, 0, "the stopped acceptor took connections")
        XCTAssertEqual(try drainQueueByHand(), 3, "the queue belongs to the generation that shares the socket")
    }

    func testTheLastUserOfASocketTakesWhatIsQueued() async throws {
        try connectClients(3)
        let acceptor = try makeAcceptor()
        await acceptor.stop(takeQueued: true)
        XCTAssertEqual(registry.openCount, 3, "every queued connection is taken, to be served rather than reset")
        XCTAssertEqual(try drainQueueByHand(), 0)
    }

    func testConnectionsBecomeChannelsOnEveryEventLoopInTurn() async throws {
        let loops = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let seen = NIOLockedValueBox<[ObjectIdentifier]>([])
        let copy = Listener(fd: fcntl(listener.fd, F_DUPFD_CLOEXEC, 3), name: listener.name)
        let adopter = ConnectionAdopter(group: loops, registry: registry, logger: Logger(label: "test")) { channel in
            channel.eventLoop.assertInEventLoop()
            seen.withLockedValue { $0.append(ObjectIdentifier(channel.eventLoop)) }
            return channel.eventLoop.makeSucceededVoidFuture()
        }
        let acceptor = try Acceptor(listener: copy, index: 0, adopter: adopter, logger: Logger(label: "test"))
        try connectClients(6)
        for _ in 0..<500 where seen.withLockedValue({ $0.count }) < 6 { try await Task.sleep(for: .milliseconds(10)) }
        await acceptor.stop(takeQueued: false)
        let loopsUsed = seen.withLockedValue { $0 }
        XCTAssertEqual(loopsUsed.count, 6, "every accepted connection became a channel")
        XCTAssertEqual(Set(loopsUsed).count, 2, "connections are spread over the event loops")
        for _ in 0..<500 where registry.openCount < 6 { try await Task.sleep(for: .milliseconds(10)) }
        XCTAssertEqual(registry.openCount, 6)
        registry.closeAll()
        for _ in 0..<500 where registry.openCount > 0 { try await Task.sleep(for: .milliseconds(10)) }
        try await loops.shutdownGracefully()
    }
}
