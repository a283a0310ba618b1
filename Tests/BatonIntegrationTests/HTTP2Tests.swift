#if os(Linux)
import Foundation
import Glibc
import NIOConcurrencyHelpers
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import NIOSSL
import XCTest

/// Issue 21: an HTTP/2 connection drains with the graceful two-step GOAWAY (RFC 9113 §6.8).
/// `hello --h2c-port` serves h2c (Hummingbird's `.plaintextHTTP2()`) beside HTTP/1.1, and
/// `--tls-port` h2 or HTTP/1.1 by ALPN (`.http2Upgrade`).
final class HTTP2Tests: IntegrationTestCase {

    /// A stream in flight when the upgrade comes finishes on the old generation; the connection
    /// gets GOAWAY(max), then, after the PING round trip, GOAWAY(last stream), and closes once
    /// that stream has ended. The next connection is the new generation's, and the HTTP/1
    /// listener beside it is still HTTP/1.
    func testAStreamInFlightFinishesOnTheOldGenerationAfterTheTwoGoAways() throws {
        let h2cPort = try freePort()
        try checkTwoGoAways(port: h2cPort, tls: false, arguments: ["--h2c-port", String(h2cPort)])
    }

    /// The same over TLS, HTTP/2 chosen by ALPN (`.http2Upgrade`): and the connection ends with
    /// close_notify (the client sees no unclean shutdown).
    func testH2OverTLSGetsTheTwoGoAwaysAndCloseNotify() throws {
        let tlsPort = try freePort()
        let (cert, key) = try makeThrowawayCertificate(in: directory)
        try checkTwoGoAways(port: tlsPort, tls: true, arguments: ["--tls-port", String(tlsPort), "--tls-cert", cert, "--tls-key", key])
    }

    /// Clients that open streams in quick batches (closed loops) across an upgrade: a stream the
    /// client sent before it read the GOAWAY is served, whatever the moment, and nothing is reset
    /// or ended with an error. (swift-nio-http2 alone refuses those streams when its server has
    /// no stream open at its first GOAWAY: see HTTP2FrameWriter.)
    func testStreamsSentAsTheDrainBeginsAreServed() throws {
        let h2cPort = try freePort()
        let hello = try startHello(["--h2c-port", String(h2cPort)])
        let clients = try (0..<16).map { _ in try H2Client(port: h2cPort) }
        defer { clients.forEach { $0.close() } }
        let sent = NIOLockedValueBox([[Int]](repeating: [], count: clients.count))
        let deadline = Date().addingTimeInterval(4)
        let group = DispatchGroup()
        for (index, client) in clients.enumerated() {
            DispatchQueue.global().async(group: group) {
                var stream = 1
                while Date() < deadline, !client.events.contains(.closed) {
                    var batch: [Int] = []
                    for _ in 0..<5 where client.trySend("/hello", stream: stream) {
                        batch.append(stream)
                        stream += 2
                    }
                    sent.withLockedValue { $0[index] += batch }
                    guard !batch.isEmpty else { break }
                    let wait = Date().addingTimeInterval(5)
                    while Date() < wait, !batch.allSatisfy({ client.response(stream: $0)?.complete == true }), !client.events.contains(.closed) {
                        Thread.sleep(forTimeInterval: 0.001)
                    }
                }
            }
        }
        Thread.sleep(forTimeInterval: 1)
        hello.signal(SIGHUP)
        XCTAssertEqual(group.wait(timeout: .now() + 20), .success)
        XCTAssertTrue(hello.waitForLog("worker generation 1 drained in", timeout: 10), "the old generation drained\n\(hello.logExcerpt())")
        var streams = 0
        for (index, client) in clients.enumerated() {
            let events = client.events
            XCTAssertFalse(events.contains { if case .reset = $0 { return true }; if case .goAwayError = $0 { return true }; return false },
                           "client \(index): a stream reset or an error GOAWAY: \(events.filter { "\($0)".contains("RST") || "\($0)".contains("GOAWAY") })")
            for stream in sent.withLockedValue({ $0[index] }) {
                streams += 1
                XCTAssertEqual(client.response(stream: stream)?.status, "200", "client \(index), stream \(stream) was sent and not answered")
            }
            XCTAssertTrue(events.contains(.goAway(lastStreamID: Int(Int32.max))), "client \(index) was drained: \(events.suffix(8))")
        }
        XCTAssertGreaterThan(streams, 1000, "the clients kept the server busy")
        XCTAssertEqual(hello.stop(timeout: 30), .exited(0))
    }

    private func checkTwoGoAways(port: UInt16, tls: Bool, arguments: [String]) throws {
        let hello = try startHello(arguments)
        let client = try H2Client(port: port, tls: tls)
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
        // Baton's own GOAWAY(max) (written below NIO), the framework's once the PING came back,
        // then GOAWAY(last stream).
        XCTAssertEqual(goAways, [Int(Int32.max), Int(Int32.max), 3], "GOAWAY(max), then GOAWAY(last stream): \(events)")
        let slow = try XCTUnwrap(client.response(stream: 3), "stream 3 got no answer: \(events)")
        XCTAssertEqual(slow.status, "200")
        XCTAssertEqual(slow.pid, old, "the stream in flight is answered by the old generation")
        XCTAssertTrue(slow.complete, "stream 3's answer ended (END_STREAM)")
        let firstGoAway = try XCTUnwrap(events.firstIndex { if case .goAway = $0 { return true } else { return false } })
        let answer = try XCTUnwrap(events.firstIndex { if case .headers(3, _) = $0 { return true } else { return false } })
        XCTAssertLessThan(firstGoAway, answer, "the GOAWAYs came while stream 3 was in flight: \(events)")
        XCTAssertFalse(events.contains { if case .error = $0 { return true } else { return false } }, "a clean close: \(events)")
        XCTAssertTrue(hello.waitForLog("worker generation 1 drained in", timeout: 10), "the old generation drained\n\(hello.logExcerpt())")

        let next = try H2Client(port: port, tls: tls)
        XCTAssertEqual(try next.get("/hello", stream: 1).pid, new, "a new connection goes to the new generation")
        next.close()
        XCTAssertEqual(hello.servingPid(), new)
        XCTAssertEqual(hello.stop(timeout: 30), .exited(0))
    }
}

/// A throwaway self-signed certificate for 127.0.0.1 and its key (EC P-256, one day), made with
/// openssl in `folder`.
func makeThrowawayCertificate(in folder: String) throws -> (certificate: String, key: String) {
    guard let openssl = Locations.find("openssl") else { throw skipOrFail("openssl is not installed (Debian package openssl)") }
    let certificate = "\(folder)/cert.pem", key = "\(folder)/key.pem"
    let made = try runCommand(openssl, ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
                                        "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                                        "-keyout", key, "-out", certificate], directory: folder)
    guard made.exitCode == 0 else { throw TestError("openssl req failed: \(made)") }
    return (certificate, key)
}

/// A frame-level HTTP/2 client, h2c (prior knowledge) or h2 over TLS (ALPN): sends GETs on the
/// streams it is told, and records what the server sends on the connection, and any error (a
/// TLS connection closed without close_notify is one). NIOHTTP2Handler answers PINGs itself.
final class H2Client: @unchecked Sendable {
    enum Event: Equatable, CustomStringConvertible {
        case headers(Int, status: String)
        case data(Int, String, endStream: Bool)
        case goAway(lastStreamID: Int)
        /// A GOAWAY with an error code, a RST_STREAM: what a drain must never send.
        case goAwayError(String)
        case reset(Int, String)
        case error(String)
        case closed

        var description: String {
            switch self {
            case .headers(let stream, let status): return "HEADERS(\(stream), \(status))"
            case .data(let stream, let text, let end): return "DATA(\(stream), \(text.prefix(60))\(end ? ", END_STREAM" : ""))"
            case .goAway(let last): return "GOAWAY(\(last))"
            case .goAwayError(let code): return "GOAWAY error \(code)"
            case .reset(let stream, let code): return "RST_STREAM(\(stream), \(code))"
            case .error(let error): return "error(\(error))"
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
            case .goAway(let last, let code, _):
                events.withLockedValue { $0.append(.goAway(lastStreamID: Int(Int32(last)))) }
                if code != .noError { events.withLockedValue { $0.append(.goAwayError("\(code)")) } }
            case .rstStream(let code):
                events.withLockedValue { $0.append(.reset(stream, "\(code)")) }
            default:
                break
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            events.withLockedValue { $0.append(.closed) }
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            events.withLockedValue { $0.append(.error(String(describing: error))) }
        }
    }

    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let channel: any Channel
    private let recorded = NIOLockedValueBox<[Event]>([])
    private let port: Int
    private let scheme: String

    /// Connects to 127.0.0.1:`port`; with `tls`, by TLS with ALPN "h2" (any certificate).
    init(port: UInt16, tls: Bool = false) throws {
        self.port = Int(port)
        self.scheme = tls ? "https" : "http"
        let recorded = self.recorded
        do {
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.certificateVerification = .none
            configuration.applicationProtocols = ["h2"]
            let context = tls ? try NIOSSLContext(configuration: configuration) : nil
            channel = try ClientBootstrap(group: group)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let context { try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: nil)) }
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
    /// Sends `GET path` on `stream` and says whether it went out (NIO refuses to open a stream
    /// once the server's GOAWAY has come).
    func trySend(_ path: String, stream: Int) -> Bool {
        let headers: HPACKHeaders = [":method": "GET", ":scheme": scheme, ":authority": "127.0.0.1:\(port)", ":path": path]
        let frame = HTTP2Frame(streamID: HTTP2StreamID(stream), payload: .headers(.init(headers: headers, endStream: true)))
        return (try? channel.writeAndFlush(frame).wait()) != nil
    }

    func send(_ path: String, stream: Int) {
        let headers: HPACKHeaders = [":method": "GET", ":scheme": scheme, ":authority": "127.0.0.1:\(port)", ":path": path]
        let frame = HTTP2Frame(streamID: HTTP2StreamID(stream), payload: .headers(.init(headers: headers, endStream: true)))
        channel.writeAndFlush(frame, promise: nil)
    }

    /// Sends `GET path` on `stream` and waits (bounded) for its complete answer.
    func get(_ path: String, stream: Int, timeout: TimeInterval = 10) throws -> Response {
        send(path, stream: stream)
        var answer: Response?
        if poll(timeout: timeout, interval: 0.01, { answer = response(stream: stream); return answer?.complete == true }), let answer { return answer }
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
        poll(timeout: timeout, interval: 0.02) { events.contains(.closed) }
    }

    func close() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}
#endif
