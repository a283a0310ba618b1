import Foundation
import NIOCore
import NIOPosix
import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import BatonNIO

/// The graceful close on a real socket: the client gets the response and then end-of-file, what
/// it still sends is read and discarded (no reset), and the connection closes when it closes.
final class LingeringCloseTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private var client: Int32 = -1
    private var channel: (any Channel)!

    override func setUp() async throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var pair: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair), 0)
        let server = pair[0]
        client = pair[1]
        channel = try await ClientBootstrap(group: group)
            .channelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ConnectionSocketHandler(fd: server, lingerTimeout: .seconds(30)))
                }
            }
            .withConnectedSocket(server).get()
    }

    override func tearDown() async throws {
        close(client)
        try await group.shutdownGracefully()
    }

    func testWithNothingPendingTheCloseIsImmediate() async throws {
        try await channel.writeAndFlush(ByteBuffer(string: "response")).get()
        try await channel.triggerUserOutboundEvent(GracefulCloseEvent()).get()
        XCTAssertEqual(readAll(client, timeout: 5), "response")
        try await channel.closeFuture.get()
    }

    func testGracefulCloseShutsDownOutputAndWaitsForTheClient() async throws {
        // The client has begun another request (the server has read part of it).
        XCTAssertEqual(write(client, "GET /ne", 7), 7)
        let started = ContinuousClock.now
        while ContinuousClock.now - started < .seconds(5) {
            let channel = self.channel!
            let arriving = try await channel.eventLoop.submit {
                try channel.pipeline.syncOperations.handler(type: ConnectionSocketHandler.self).activity.requestArriving
            }.get()
            if arriving { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        try await channel.writeAndFlush(ByteBuffer(string: "response")).get()
        try await channel.triggerUserOutboundEvent(GracefulCloseEvent()).get()

        // The client reads the whole response, then end-of-file.
        XCTAssertEqual(readAll(client, timeout: 5), "response")
        // What it sends now is taken in and dropped: the socket stays open, nothing is reset.
        XCTAssertEqual(write(client, "GET / HTTP/1.1\r\n\r\n", 18), 18)
        try await Task.sleep(for: .milliseconds(200))
        XCTAssertTrue(channel.isActive, "closed before the client did")
        // The client closes: so does the server, long before the linger timeout.
        shutdown(client, Int32(SHUT_WR))
        let closing = ContinuousClock.now
        try await channel.closeFuture.get()
        XCTAssertLessThan(ContinuousClock.now - closing, .seconds(5))
    }

    /// Reads until end-of-file (or `timeout`), returns what came.
    private func readAll(_ fd: Int32, timeout: Double) -> String? {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 256)
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 100) >= 0 else { return nil }
            guard poller.revents != 0 else { continue }
            let n = read(fd, &buffer, buffer.count)
            if n == 0 { return String(decoding: bytes, as: UTF8.self) }
            if n < 0 { return nil }
            bytes += buffer[0..<n]
        }
        return nil
    }
}
