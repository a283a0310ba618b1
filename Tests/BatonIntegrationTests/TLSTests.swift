#if os(Linux)
import Foundation
import Glibc
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import XCTest

/// Issue 21: HTTP/1.1 over TLS (`hello --tls-port`, HTTP/1.1 chosen by ALPN). A TLS session
/// cannot move with its socket, so its connections are not handed over: at a drain a request in
/// flight gets `Connection: close` on its answer, an idle connection is closed once idle, and
/// both closes go through TLS (close_notify), so the client reads every answer.
final class TLSTests: IntegrationTestCase {
    func testHTTP1OverTLSClosesGracefullyWithCloseNotify() throws {
        let tlsPort = try freePort()
        let (cert, key) = try makeThrowawayCertificate(in: directory)
        let hello = try startHello(["--tls-port", String(tlsPort), "--tls-cert", cert, "--tls-key", key])
        let busy = try TLSHTTP1Client(port: tlsPort)
        let idle = try TLSHTTP1Client(port: tlsPort)
        defer { busy.close(); idle.close() }

        let old = try XCTUnwrap(try busy.get("/hello").pid)
        XCTAssertEqual(try idle.get("/hello").pid, old, "one generation serves both")
        hello.track(old)

        busy.send("/sleep?ms=1500")
        Thread.sleep(forTimeInterval: 0.3)
        hello.signal(SIGHUP)
        let new = try XCTUnwrap(waitForNewPid(port: hello.port, master: hello, old: old), "no new generation\n\(hello.logExcerpt())")
        hello.track(new)

        XCTAssertTrue(busy.waitUntilClosed(timeout: 20), "the busy connection did not close: \(busy.events)\n\(hello.logExcerpt())")
        let answers = busy.responses
        XCTAssertEqual(answers.count, 2, "\(busy.events)")
        XCTAssertEqual(answers.last?.status, 200)
        XCTAssertEqual(answers.last?.pid, old, "the request in flight is answered by the old generation")
        XCTAssertEqual(answers.last?.connection, "close", "its answer says the connection closes")
        XCTAssertEqual(busy.errors, [], "closed with close_notify, not cut off")

        XCTAssertTrue(idle.waitUntilClosed(timeout: 20), "the idle connection did not close: \(idle.events)\n\(hello.logExcerpt())")
        XCTAssertEqual(idle.responses.count, 1)
        XCTAssertEqual(idle.errors, [], "closed with close_notify, not cut off")
        XCTAssertTrue(hello.waitForLog("worker generation 1 drained in", timeout: 10), "the old generation drained\n\(hello.logExcerpt())")
        XCTAssertTrue(hello.log.contains("ms: 0 connection(s) handed over"), "no TLS connection is handed over\n\(hello.logExcerpt())")

        let next = try TLSHTTP1Client(port: tlsPort)
        XCTAssertEqual(try next.get("/hello").pid, new, "a new connection goes to the new generation")
        next.close()
        XCTAssertEqual(hello.stop(timeout: 30), .exited(0))
    }
}

/// An HTTP/1.1 client over TLS (any certificate; ALPN http/1.1) on one keep-alive connection:
/// sends GETs, records each answer, every error (a close without close_notify is one) and the
/// close.
final class TLSHTTP1Client: @unchecked Sendable {
    struct Response {
        var status: Int
        var connection: String?
        var body = ""
        var pid: pid_t? {
            guard let range = body.range(of: #""pid":\s*(\d+)"#, options: .regularExpression) else { return nil }
            return pid_t(body[range].split(separator: ":").last!.trimmingCharacters(in: .whitespaces))
        }
    }

    private struct State {
        var responses: [Response] = []
        var complete = 0
        var errors: [String] = []
        var closed = false
        var events: [String] = []
    }

    private final class Recorder: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPClientResponsePart
        let state: NIOLockedValueBox<State>
        init(_ state: NIOLockedValueBox<State>) { self.state = state }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            state.withLockedValue { state in
                switch unwrapInboundIn(data) {
                case .head(let head):
                    state.responses.append(Response(status: Int(head.status.code), connection: head.headers.first(name: "connection")))
                    state.events.append("head \(head.status.code)")
                case .body(let buffer):
                    state.responses[state.responses.count - 1].body += String(buffer: buffer)
                case .end:
                    state.complete += 1
                    state.events.append("end")
                }
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            state.withLockedValue { $0.errors.append(String(describing: error)); $0.events.append("error \(error)") }
        }

        func channelInactive(context: ChannelHandlerContext) {
            state.withLockedValue { $0.closed = true; $0.events.append("closed") }
        }
    }

    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let channel: any Channel
    private let state = NIOLockedValueBox(State())

    init(port: UInt16) throws {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .none
        configuration.applicationProtocols = ["http/1.1"]
        let state = self.state
        do {
            let context = try NIOSSLContext(configuration: configuration)
            channel = try ClientBootstrap(group: group)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: nil))
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(Recorder(state))
                    }
                }
                .connect(host: "127.0.0.1", port: Int(port)).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
    }

    var responses: [Response] { state.withLockedValue { $0.responses } }
    var errors: [String] { state.withLockedValue { $0.errors } }
    var events: [String] { state.withLockedValue { $0.events } }

    /// Sends `GET path` and returns at once.
    func send(_ path: String) {
        var headers = HTTPHeaders()
        headers.add(name: "host", value: "127.0.0.1")
        channel.write(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
    }

    /// Sends `GET path` and waits (bounded) for its complete answer.
    func get(_ path: String, timeout: TimeInterval = 10) throws -> Response {
        let before = state.withLockedValue { $0.complete }
        send(path)
        var answer: Response?
        if poll(timeout: timeout, interval: 0.01, { answer = state.withLockedValue { $0.complete > before ? $0.responses.last : nil }; return answer != nil }),
           let answer { return answer }
        throw TestError("no complete answer to \(path) within \(timeout) s: \(events)")
    }

    func waitUntilClosed(timeout: TimeInterval) -> Bool {
        poll(timeout: timeout, interval: 0.02) { state.withLockedValue { $0.closed } }
    }

    func close() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}
#endif
