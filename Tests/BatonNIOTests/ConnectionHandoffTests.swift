import Foundation
import Logging
import NIOCore
import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import BatonNIO
import CBaton

/// The hand-over's inbox when the next generation dies: connections wait a grace for new
/// orders (the drain called off, or a newer inbox) instead of closing at once, and what was
/// lent to it and not read there comes back.
final class ConnectionHandoffTests: XCTestCase {
    private func pair() -> (sender: Int32, receiver: Int32) {
        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds), 0)
        return (fds[0], fds[1])
    }

    /// A hand-over whose next generation has died (its end of the inbox is closed).
    private func handoffToADeadSuccessor(grace: TimeAmount) -> ConnectionHandoff {
        let dead = pair()
        close(dead.receiver)
        return ConnectionHandoff(inbox: dead.sender, listenerNames: ["http"], handingOver: [0], window: .seconds(10),
                                 peerGoneGrace: grace, logger: Logger(label: "test"))
    }

    private func connection() -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        return fd
    }

    func testAGoneSuccessorIsWaitedForThenTheConnectionsClose() throws {
        let handoff = handoffToADeadSuccessor(grace: .milliseconds(200))
        defer { handoff.close() }
        let fd = connection()
        defer { close(fd) }
        guard case .full = handoff.handOver(fd, listener: 0) else { return XCTFail("a gone successor must be waited for") }
        XCTAssertTrue(handoff.takes(listener: 0), "still waiting for orders")
        guard case .full = handoff.handOver(fd, listener: 0) else { return XCTFail("within the grace") }
        XCTAssertTrue(poll(timeout: 5) {
            if case .closed = handoff.handOver(fd, listener: 0) { return true } else { return false }
        }, "after the grace the connections close gracefully")
        XCTAssertFalse(handoff.takes(listener: 0))
    }

    func testANewerInboxWithinTheGraceTakesTheConnections() throws {
        let handoff = handoffToADeadSuccessor(grace: .seconds(30))
        defer { handoff.close() }
        let fd = connection()
        defer { close(fd) }
        guard case .full = handoff.handOver(fd, listener: 0) else { return XCTFail("a gone successor must be waited for") }
        let newer = pair()
        defer { close(newer.receiver) }
        handoff.retarget(to: newer.sender)
        guard case .sent = handoff.handOver(fd, listener: 0) else { return XCTFail("the newer inbox takes it") }
        XCTAssertEqual(handoff.counts.handedOver, 1)
    }

    // MARK: lent connections

    /// A loopback TCP connection: the client's end and the server's (blocking both).
    private func tcpConnection() throws -> (client: Int32, server: Int32) {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        try withUnsafeMutablePointer(to: &address) { pointer in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                guard bind(listener, address, length) == 0, listen(listener, 4) == 0, getsockname(listener, address, &length) == 0 else {
                    throw POSIXError(.EADDRNOTAVAIL)
                }
            }
        }
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try withUnsafePointer(to: &address) { pointer in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                guard connect(client, address, length) == 0 else { throw POSIXError(.ECONNREFUSED) }
            }
        }
        let server = accept(listener, nil, nil)
        XCTAssertGreaterThanOrEqual(server, 0)
        return (client, server)
    }

    private func send(_ text: String, on fd: Int32) {
        XCTAssertEqual(text.withCString { Glibc.send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }, text.utf8.count)
    }

    /// Reads what is there (waiting up to `waiting` ms for something); "" on EOF, nil on an
    /// error or when nothing came.
    private func receive(on fd: Int32, waiting: Int32 = 2_000) -> String? {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard Glibc.poll(&entry, 1, waiting) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = recv(fd, &buffer, buffer.count, 0)
        return n < 0 ? nil : String(decoding: buffer[0..<n], as: UTF8.self)
    }

    private func takeFromInbox(_ receiver: Int32) -> Int32 {
        var buffer = [UInt8](repeating: 0, count: 128)
        var fd: Int32 = -1
        XCTAssertGreaterThan(baton_recv_fd(receiver, &buffer, buffer.count, &fd), 0)
        return fd
    }

    /// The next generation dies during the hand-over. A connection it never read from comes
    /// back whole, whether it had taken it from its inbox or not; one it read from goes with it.
    func testWhatADeadSuccessorNeverReadFromComesBack() throws {
        let inbox = pair()
        let handoff = ConnectionHandoff(inbox: inbox.sender, listenerNames: ["http"], handingOver: [0], window: .seconds(10),
                                        logger: Logger(label: "test"))
        defer { handoff.close() }
        let (read, taken, queued) = (try tcpConnection(), try tcpConnection(), try tcpConnection())
        defer { for fd in [read.client, taken.client, queued.client] { close(fd) } }
        // This process answered a request on each before the hand-over.
        for connection in [read, taken, queued] {
            send("GET / HTTP/1.1\r\n\r\n", on: connection.client)
            XCTAssertEqual(receive(on: connection.server), "GET / HTTP/1.1\r\n\r\n")
        }
        for connection in [read, taken, queued] {
            guard case .sent = handoff.handOver(connection.server, listener: 0) else { return XCTFail("the inbox takes it") }
            close(connection.server)  // as NIO does once it is sent
        }
        // The next generation takes two and reads from one; the third waits in its inbox.
        let readThere = takeFromInbox(inbox.receiver), takenThere = takeFromInbox(inbox.receiver)
        send("next", on: read.client)
        XCTAssertEqual(receive(on: readThere), "next")
        send("waiting", on: taken.client)
        send("queued", on: queued.client)
        // It dies: the kernel closes its descriptors and its inbox, with what was queued there.
        for fd in [readThere, takenThere, inbox.receiver] { close(fd) }

        let (connections, lost) = handoff.takeBack()
        XCTAssertEqual(lost, 1, "the connection it read from is lost with it")
        let back = try XCTUnwrap(connections[0])
        XCTAssertEqual(back.count, 2)
        defer { for fd in back { close(fd) } }
        XCTAssertEqual(handoff.counts.takenBack, 2)
        // Served here again: what the clients sent is all there, and answers reach them.
        XCTAssertEqual(Set(back.compactMap { receive(on: $0) }), ["waiting", "queued"])
        for fd in back { send("answer", on: fd) }
        XCTAssertEqual(receive(on: taken.client), "answer")
        XCTAssertEqual(receive(on: queued.client), "answer")
        XCTAssertEqual(receive(on: read.client), "", "the connection the dead process read from is closed")
    }

    /// While the next generation lives, nothing comes back, and the copies this process kept
    /// go without closing what that generation serves.
    func testALivingSuccessorKeepsWhatItWasHanded() throws {
        let inbox = pair()
        defer { close(inbox.receiver) }
        let handoff = ConnectionHandoff(inbox: inbox.sender, listenerNames: ["http"], handingOver: [0], window: .seconds(10),
                                        logger: Logger(label: "test"))
        let connection = try tcpConnection()
        defer { close(connection.client) }
        guard case .sent = handoff.handOver(connection.server, listener: 0) else { return XCTFail("the inbox takes it") }
        close(connection.server)
        let there = takeFromInbox(inbox.receiver)
        defer { close(there) }
        let (connections, lost) = handoff.takeBack()
        XCTAssertTrue(connections.isEmpty)
        XCTAssertEqual(lost, 0)
        handoff.close()
        send("still", on: connection.client)
        XCTAssertEqual(receive(on: there), "still")
        send("here", on: there)
        XCTAssertEqual(receive(on: connection.client), "here")
    }

    /// A connection is lent for `lendFor` only, with or without further sends: after that its
    /// death in the next generation is that generation's, and closing it there closes it (no copy
    /// holds it open here).
    func testALoanEnds() throws {
        let inbox = pair()
        let handoff = ConnectionHandoff(inbox: inbox.sender, listenerNames: ["http"], handingOver: [0], window: .seconds(10),
                                        lendFor: .seconds(1), logger: Logger(label: "test"))
        defer { handoff.close() }
        let (first, second) = (try tcpConnection(), try tcpConnection())
        defer { close(first.client); close(second.client) }
        guard case .sent = handoff.handOver(first.server, listener: 0) else { return XCTFail("the inbox takes it") }
        close(first.server)
        close(takeFromInbox(inbox.receiver))
        usleep(100_000)
        XCTAssertNil(receive(on: first.client, waiting: 0), "lent: the copy here holds it open")
        XCTAssertEqual(receive(on: first.client), "", "closed where it went once the loan ended")

        guard case .sent = handoff.handOver(second.server, listener: 0) else { return XCTFail("the inbox takes it") }
        close(second.server)
        close(inbox.receiver)
        let (connections, _) = handoff.takeBack()
        XCTAssertEqual(connections[0]?.count, 1, "the second was still lent")
        for fd in connections[0] ?? [] { close(fd) }
    }

    /// A loan made after the others ended early (a newer inbox took over) while their timer was
    /// still pending ends on time too: that one timer goes on to it.
    func testALoanMadeAfterTheOthersEndedEarlyEndsOnTime() throws {
        let (older, newer) = (pair(), pair())
        let handoff = ConnectionHandoff(inbox: older.sender, listenerNames: ["http"], handingOver: [0], window: .seconds(10),
                                        lendFor: .milliseconds(600), logger: Logger(label: "test"))
        defer { handoff.close(); close(older.receiver); close(newer.receiver) }
        let (first, second) = (try tcpConnection(), try tcpConnection())
        defer { close(first.client); close(second.client) }
        guard case .sent = handoff.handOver(first.server, listener: 0) else { return XCTFail("the inbox takes it") }
        close(first.server)
        close(takeFromInbox(older.receiver))
        handoff.retarget(to: newer.sender)  // ends the first loan; its timer stays pending
        XCTAssertEqual(receive(on: first.client), "", "its loan ended with the retarget")
        usleep(300_000)
        guard case .sent = handoff.handOver(second.server, listener: 0) else { return XCTFail("the newer inbox takes it") }
        let sentAt = Date()
        close(second.server)
        close(takeFromInbox(newer.receiver))
        // The pending timer fires 300 ms after this send, with the loan not due yet.
        usleep(450_000)
        XCTAssertNil(receive(on: second.client, waiting: 0), "lent for 600 ms: the copy here holds it open")
        XCTAssertEqual(receive(on: second.client), "", "closed once its own loan ended")
        let held = Date().timeIntervalSince(sentAt)
        XCTAssertGreaterThanOrEqual(held, 0.6, "not before its loan ended")
    }

    private func poll(timeout: TimeInterval, _ condition: () -> Bool) -> Bool {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }
}
