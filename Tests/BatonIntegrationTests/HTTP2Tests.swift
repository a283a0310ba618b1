#if os(Linux)
import Foundation
import Glibc
import NIOConcurrencyHelpers
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import XCTest

/// Issue 21: an HTTP/2 connection drains with the graceful two-step GOAWAY (RFC 9113 §6.8).
/// `hello --h2c-port` serves h2c (Hummingbird's `.plaintextHTTP2()`) beside HTTP/1.1.
final class HTTP2Tests: IntegrationTestCase {

    /// A stream in flight when the upgrade comes finishes on the old generation; the connection
    /// gets GOAWAY(max stream id), then, after the PING round trip, GOAWAY(last stream), and
    /// closes once that stream has ended. The next connection is the new generation's, and the
    /// HTTP/1 listener beside it is still HTTP/1.
    func testAStreamInFlightFinishesOnTheOldGenerationAfterTheTwoGoAways() throws {
        let h2cPort = try freePort()
        let hello = try startHello(["--h2c-port", String(h2cPort)])
        let client = try H2CClient(port: h2cPort)
        defer { client.close() }

        let first = try client.get("/hello", stream: 1)
        XCTAssertEqual(first.status, "200")
        let old = try XCTUnwrap(first.pid, "no pid in \(first.body)")
        hello.track(old)
        XCTAssertEqual(hello.servingPid(), old, "the HTTP/1 listener is served by the same worker, as HTTP/1")

        client.send("/sleep?ms=2000", stream: 3)
        Thread.sleep(forTimeInterval: 0.3)
        hello.signal(SIGHUP)
        let new = try XCTUnwrap(waitForNewPid(port: hello.port, master: hello, old: old), "no new generation\n\(hello.logExcerpt())")
        hello.track(new)

        XCTAssertTrue(client.waitUntilClosed(timeout: 20), "the old generation's connection did not close\n\(client.events)\n\(hello.logExcerpt())")
        let events = client.events
        let goAways = events.compactMap { if case .goAway(let last) = $0 { return last } else { return nil } }
        XCTAssertEqual(goAways, [Int(Int32.max), 3], "GOAWAY(max), then GOAWAY(last stream): \(events)")
        let slow = try XCTUnwrap(client.response(stream: 3), "stream 3 got no answer: \(events)")
        XCTAssertEqual(slow.status, "200")
        XCTAssertEqual(slow.pid, old, "the stream in flight is answered by the old generation")
        XCTAssertTrue(slow.complete, "stream 3's answer ended (END_STREAM)")
        let firstGoAway = try XCTUnwrap(events.firstIndex { if case .goAway = $0 { return true } else { return false } })
        let answer = try XCTUnwrap(events.firstIndex { if case .headers(3, _) = $0 { return true } else { return false } })
        XCTAssertLessThan(firstGoAway, answer, "the GOAWAYs came while stream 3 was in flight: \(events)")
        XCTAssertTrue(hello.waitForLog("worker generation 1 drained in", timeout: 10), "the old generation drained\n\(hello.logExcerpt())")

        let next = try H2CClient(port: h2cPort)
        XCTAssertEqual(try next.get("/hello", stream: 1).pid, new, "a new connection goes to the new generation")
        next.close()
        XCTAssertEqual(hello.servingPid(), new)
        XCTAssertEqual(hello.stop(timeout: 30), .exited(0))
    }
}

/// A frame-level h2c client (prior knowledge): sends GETs on the streams it is told, and records
/// what the server sends on the connection. NIOHTTP2Handler answers the server's PINGs itself.
final class H2CClient: @unchecked Sendable {
    enum Event: Equatable, CustomStringConvertible {
        case headers(Int, status: String)
        case data(Int, String, endStream: Bool)
        case goAway(lastStreamID: Int)
        case closed

        var description: String {
            switch self {
            case .headers(let stream, let status): return "HEADERS(\(stream), \(status))"
            case .data(let stream, let text, let end): return "DATA(\(stream), \(text.prefix(60))\(end ? ", END_STREAM" : ""))"
            case .goAway(let last): return "GOAWAY(\(last))"
            case .closed: return "closed"
            }
        }
    }

    struct Response {
        var status: String
        var body: String
        var complete: Bool
        var pid: pid_t? {
            guard let range = body.range(of: #""pid":\s*(\d+)"#, options: .regularExpression) else { return nil }
            return pid_t(body[range].split(separator: ":").last!.trimmingCharacters(in: .whitespaces))
        }
    }

    private final class Recorder: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTP2Frame
        let events: NIOLockedValueBox<[Event]>
        init(_ events: NIOLockedValueBox<[Event]>) { self.events = events }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let frame = unwrapInboundIn(data)
            let stream = Int(Int32(frame.streamID))
            switch frame.payload {
            case .headers(let headers):
                events.withLockedValue { $0.append(.headers(stream, status: headers.headers.first(name: ":status") ?? "?")) }
                if headers.endStream { events.withLockedValue { $0.append(.data(stream, "", endStream: true)) } }
            case .data(let data):
                guard case .byteBuffer(let buffer) = data.data else { return }
                events.withLockedValue { $0.append(.data(stream, String(buffer: buffer), endStream: data.endStream)) }
            case .goAway(let last, _, _):
                events.withLockedValue { $0.append(.goAway(lastStreamID: Int(Int32(last)))) }
            default:
                break
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            events.withLockedValue { $0.append(.closed) }
            context.fireChannelInactive()
        }
    }

    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let channel: any Channel
    private let recorded = NIOLockedValueBox<[Event]>([])
    private let port: Int

    init(port: UInt16) throws {
        self.port = Int(port)
        let recorded = self.recorded
        do {
            channel = try ClientBootstrap(group: group)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(NIOHTTP2Handler(mode: .client))
                        try channel.pipeline.syncOperations.addHandler(Recorder(recorded))
                    }
                }
                .connect(host: "127.0.0.1", port: Int(port)).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
    }

    var events: [Event] { recorded.withLockedValue { $0 } }

    /// Sends `GET path` on `stream` (odd, increasing) and returns at once.
    func send(_ path: String, stream: Int) {
        let headers: HPACKHeaders = [":method": "GET", ":scheme": "http", ":authority": "127.0.0.1:\(port)", ":path": path]
        let frame = HTTP2Frame(streamID: HTTP2StreamID(stream), payload: .headers(.init(headers: headers, endStream: true)))
        channel.writeAndFlush(frame, promise: nil)
    }

    /// Sends `GET path` on `stream` and waits (bounded) for its complete answer.
    func get(_ path: String, stream: Int, timeout: TimeInterval = 10) throws -> Response {
        send(path, stream: stream)
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let response = response(stream: stream), response.complete { return response }
            Thread.sleep(forTimeInterval: 0.01)
        }
        throw TestError("no complete answer on stream \(stream) within \(timeout) s: \(events)")
    }

    /// What has come on `stream` so far; nil before its HEADERS.
    func response(stream: Int) -> Response? {
        var response: Response?
        for event in events {
            switch event {
            case .headers(stream, let status): response = Response(status: status, body: "", complete: false)
            case .data(stream, let text, let end):
                response?.body += text
                if end { response?.complete = true }
            default: break
            }
        }
        return response
    }

    func waitUntilClosed(timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if events.contains(.closed) { return true }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return false
    }

    func close() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}
#endif
