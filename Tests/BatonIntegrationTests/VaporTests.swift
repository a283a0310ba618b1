#if os(Linux)
import Foundation
import Glibc
import XCTest

/// `vapor-hello` (a Vapor app served by BatonVapor) under the same process tests as `hello`:
/// upgrades under load, request bodies, streaming, HTTP/1 connection rules.
final class VaporTests: IntegrationTestCase {

    private func startVaporHello(_ extraArguments: [String] = []) throws -> HelloProcess {
        try startHello(extraArguments, binary: "vapor-hello")
    }

    /// ≥ 5 upgrades by SIGHUP under keep-alive and connection-per-request load: no request fails,
    /// each generation drains and exits, the master keeps its pid, SIGTERM ends everything.
    func testVaporUpgradesUnderLoadFailNoRequest() throws {
        let hello = try startVaporHello()
        let master = hello.masterPid
        let (load, _) = try startLoadOnOneWorker(hello, keepAlive: 32, perRequest: 2, "before the first upgrade")

        let upgrades = 5
        let (report, survivors) = upgradeBySIGHUP(hello, under: load, times: upgrades)
        if let last = report.pidOrder.last { XCTAssertEqual(survivors, [last], "the newest generation should be the one left") }
        XCTAssertTrue(Proc.isAlive(master))
        XCTAssertEqual(hello.logCount("drained in"), upgrades * 2, "each old worker and the master log its drain")
        // The keep-alive clients moved with each upgrade (issue 13): only the per-request
        // clients, which ask for `Connection: close`, ever reconnected.
        XCTAssertEqual(hello.logCount(", 0 closed"), upgrades, hello.logLines(containing: "handed over").joined(separator: "\n"))
        XCTAssertEqual(report.keepAliveConnects, 32, "\(report)")

        assertStopsCleanly(hello, timeout: 40, workers: report.pids)
    }

    /// `POST /echo` returns 100 KB intact; a body over the limit gets 413 (from Vapor's error
    /// middleware) and the worker keeps serving, on the same connection too.
    func testVaporRequestBodiesAndLimit() throws {
        let hello = try startVaporHello(["--max-body-size", "1048576"])
        let worker = try XCTUnwrap(hello.servingPid())
        hello.track(worker)

        let body = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let connection = try RawHTTP(port: hello.port)
        let echoed = try connection.exchange(method: "POST", path: "/echo", body: body)
        XCTAssertEqual(echoed.status, 200)
        XCTAssertEqual(echoed.body.count, body.count)
        XCTAssertTrue(echoed.body == body, "the echoed body differs from the one sent")

        let tooLarge = try connection.exchange(method: "POST", path: "/echo", body: [UInt8](repeating: 65, count: 1_100_000))
        XCTAssertEqual(tooLarge.status, 413, tooLarge.text)
        XCTAssertTrue(tooLarge.text.contains("\"error\":true"), "413 not formatted by Vapor's error middleware: \(tooLarge.text)")
        // The same connection, then a fresh one: the same worker answers.
        let after = try connection.exchange(method: "GET", path: "/hello")
        XCTAssertEqual(after.status, 200)
        XCTAssertEqual(HTTPResponse.jsonInteger(named: "pid", in: after.body).map { pid_t($0) }, worker)
        XCTAssertEqual(hello.servingPid(), worker)

        // Routing and the error middleware: an unknown route is Vapor's JSON 404.
        let missing = try connection.exchange(method: "GET", path: "/nowhere")
        XCTAssertEqual(missing.status, 404)
        XCTAssertTrue(missing.text.contains("\"error\":true"), missing.text)
        XCTAssertEqual(hello.stop(timeout: 40), .exited(0))
    }

    /// `GET /stream` writes each chunk as it is produced: the first arrives long before the last
    /// is produced (5 chunks 400 ms apart).
    func testVaporStreamingResponseIsNotBuffered() throws {
        let hello = try startVaporHello()
        let connection = try RawHTTP(port: hello.port)
        let sent = Date()
        let response = try connection.exchange(method: "GET", path: "/stream?chunks=5&ms=400")
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.header("transfer-encoding")?.lowercased(), "chunked")
        XCTAssertEqual(response.text.split(separator: "\n").count, 5, response.text)
        let first = try XCTUnwrap(response.firstBodyByteAt).timeIntervalSince(sent)
        let last = try XCTUnwrap(response.completedAt).timeIntervalSince(sent)
        // The last chunk is produced 1.6 s after the first.
        XCTAssertLessThan(first, 1.0, "first chunk after \(first) s: buffered?")
        XCTAssertGreaterThan(last - first, 1.2, "first chunk at \(first) s, last at \(last) s")
        // The connection stays usable after a streamed response.
        XCTAssertEqual(try connection.exchange(method: "GET", path: "/hello").status, 200)
        XCTAssertEqual(hello.stop(timeout: 40), .exited(0))
    }

    /// HEAD gets the headers without a body; `Connection: close` is echoed and the connection
    /// closed; HTTP/1.0 without keep-alive is closed, with keep-alive kept; JSON `Content`.
    func testVaporHTTP1ConnectionRules() throws {
        let hello = try startVaporHello()

        let head = try RawHTTP(port: hello.port)
        let headResponse = try head.exchange(method: "HEAD", path: "/hello")
        XCTAssertEqual(headResponse.status, 200)
        XCTAssertEqual(headResponse.body.count, 0)
        XCTAssertNotNil(headResponse.header("content-length"))
        XCTAssertEqual(try head.exchange(method: "GET", path: "/hello").status, 200, "connection unusable after HEAD")

        let json = try head.exchange(method: "GET", path: "/hello")
        XCTAssertEqual(json.header("content-type")?.hasPrefix("application/json"), true)
        let object = try JSONSerialization.jsonObject(with: Data(json.body)) as? [String: Any]
        XCTAssertEqual(object?["message"] as? String, "Hello from Baton")
        XCTAssertEqual(object?["ver"] as? String, "1")
        XCTAssertNotNil(object?["pid"] as? Int)
        XCTAssertNotNil(json.header("date"))

        let close = try RawHTTP(port: hello.port)
        let closed = try close.exchange(method: "GET", path: "/hello", headers: ["Connection: close"])
        XCTAssertEqual(closed.header("connection")?.lowercased(), "close")
        XCTAssertTrue(close.readsEOF(), "server did not close after Connection: close")

        let http10 = try RawHTTP(port: hello.port)
        let answer10 = try http10.exchange(method: "GET", path: "/hello", version: "HTTP/1.0")
        XCTAssertEqual(answer10.status, 200)
        XCTAssertTrue(http10.readsEOF(), "server kept an HTTP/1.0 connection without keep-alive open")

        let keep10 = try RawHTTP(port: hello.port)
        let kept = try keep10.exchange(method: "GET", path: "/hello", headers: ["Connection: keep-alive"], version: "HTTP/1.0")
        XCTAssertEqual(kept.header("connection")?.lowercased(), "keep-alive")
        XCTAssertEqual(try keep10.exchange(method: "GET", path: "/hello", headers: ["Connection: keep-alive"], version: "HTTP/1.0").status, 200)

        // Two pipelined requests on one write: both answered, in order.
        let pipelined = try RawHTTP(port: hello.port)
        try pipelined.send(Array("GET /sleep?ms=200 HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        let one = try pipelined.readResponse(method: "GET")
        let two = try pipelined.readResponse(method: "GET")
        XCTAssertTrue(one.text.contains("slept 200 ms"), one.text)
        XCTAssertTrue(two.text.contains("Hello from Baton"), two.text)
        XCTAssertEqual(hello.stop(timeout: 40), .exited(0))
    }
}

extension VaporTests {
    /// `Response.upgrader` works: `/ws` upgrades to a WebSocket that echoes text; when the worker
    /// drains (an upgrade), the WebSocket gets a close frame 1001 (going away) within the close
    /// window rather than holding the drain until its deadline.
    func testVaporWebSocketUpgradeAndDrain() throws {
        let hello = try startVaporHello()
        let worker = try XCTUnwrap(hello.servingPid())
        hello.track(worker)
        let socket = try RawHTTP(port: hello.port)
        let upgrade = try socket.exchange(method: "GET", path: "/ws", headers: [
            "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
        ])
        XCTAssertEqual(upgrade.status, 101, upgrade.text)
        XCTAssertEqual(upgrade.header("sec-websocket-accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")

        // A masked text frame "ping", echoed unmasked.
        let mask: [UInt8] = [1, 2, 3, 4]
        let payload = Array("ping".utf8).enumerated().map { $0.element ^ mask[$0.offset % 4] }
        try socket.send([0x81, 0x80 | UInt8(payload.count)] + mask + payload)
        XCTAssertEqual(try socket.readBytes(6), [0x81, 4] + Array("ping".utf8))

        // An upgrade: the old worker sends close 1001 and exits well before any deadline.
        let sent = Date()
        hello.signal(SIGHUP)
        let close = try socket.readBytes(4)
        XCTAssertEqual(close, [0x88, 2, 0x03, 0xE9], "expected a close frame with 1001")
        try socket.send([0x88, 0x82] + mask + [0x03 ^ 1, 0xE9 ^ 2])
        XCTAssertTrue(poll(timeout: 10) { !Proc.isAlive(worker) }, "the old worker still runs 10 s after the upgrade")
        XCTAssertLessThan(Date().timeIntervalSince(sent), 10)
        XCTAssertEqual(hello.stop(timeout: 40), .exited(0))
    }

    /// BatonVapor's WebSockets get the same drain as Hummingbird's (BatonNIO's
    /// WebSocketDrainHandler): 20 reconnecting echo clients across an upgrade lose no message,
    /// and their closes are 1001 and spread over the window.
    func testVaporWebSocketsAreClosedWith1001OverTheWindow() throws {
        let hello = try startVaporHello()
        let clients = 20
        let load = WebSocketLoad.start(clients, url: "ws://127.0.0.1:\(hello.port)/ws")
        defer { _ = load.stop() }
        let tally = load.tally
        XCTAssertTrue(poll(timeout: 10) { tally.withLockedValue { $0.connects } >= clients }, "\(tally.withLockedValue { $0.errors })")
        Thread.sleep(forTimeInterval: 0.5)
        let upgraded = Date()
        hello.signal(SIGHUP)
        XCTAssertTrue(hello.waitForLog("worker generation 1 drained in", timeout: 20), "generation 1 drained\n\(hello.logExcerpt())")
        Thread.sleep(forTimeInterval: 0.5)
        XCTAssertTrue(load.stop(), "the clients stopped")
        let result = tally.withLockedValue { $0 }
        XCTAssertEqual(result.errors, [])
        var lost = 0
        for (client, sent) in result.sent { lost += sent.subtracting(result.echoed[client] ?? []).count }
        XCTAssertEqual(lost, 0, "every message sent was echoed (\(result.sent.values.map(\.count).reduce(0, +)) sent)")
        XCTAssertEqual(result.serverCloses.count, clients, "\(result.serverCloses.map(\.client))")
        XCTAssertTrue(result.serverCloses.allSatisfy { $0.code == .goingAway }, "\(result.serverCloses.map(\.code))")
        let times = result.serverCloses.map { $0.at.timeIntervalSince(upgraded) }
        XCTAssertGreaterThan((times.max() ?? 0) - (times.min() ?? 0), 1, "spread over the window: \(times.sorted())")
        XCTAssertEqual(hello.stop(timeout: 40), .exited(0))
    }
}

/// A raw HTTP/1 client for what `HTTPConnection` does not do: any method and body, HTTP/1.0,
/// and when the first body byte and the end of a response arrived.
final class RawHTTP {
    struct Response {
        var status: Int
        var headers: [(String, String)]
        var body: [UInt8]
        var firstBodyByteAt: Date?
        var completedAt: Date?
        var text: String { String(decoding: body, as: UTF8.self) }
        func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name }?.1 }
    }

    private let connection: HTTPConnection
    private var buffer: [UInt8] = []

    init(port: UInt16) throws {
        connection = try HTTPConnection(port: port)
    }

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(connection.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw HTTPFailure.write(errno: errno) }
            offset += n
        }
    }

    func exchange(method: String, path: String, headers: [String] = [], body: [UInt8] = [], version: String = "HTTP/1.1") throws -> Response {
        var head = "\(method) \(path) \(version)\r\nHost: 127.0.0.1\r\n"
        for header in headers { head += header + "\r\n" }
        if !body.isEmpty || method == "POST" { head += "Content-Length: \(body.count)\r\n" }
        head += "\r\n"
        try send(Array(head.utf8) + body)
        return try readResponse(method: method)
    }

    /// True when the server closes the connection (within the receive timeout).
    func readsEOF() -> Bool {
        var byte: UInt8 = 0
        return recv(connection.fd, &byte, 1, 0) == 0
    }

    private func fill() throws {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(connection.fd, $0.baseAddress, $0.count, 0) }
        if n == 0 { throw HTTPFailure.eof(receivedBytes: buffer.count) }
        if n < 0 { throw errno == EAGAIN ? HTTPFailure.timeout : HTTPFailure.read(errno: errno) }
        buffer += chunk[..<n]
    }

    /// The next `count` bytes, whatever they are (after an upgrade).
    func readBytes(_ count: Int) throws -> [UInt8] {
        while buffer.count < count { try fill() }
        return take(count)
    }

    private func take(_ count: Int) -> [UInt8] {
        defer { buffer.removeFirst(count) }
        return Array(buffer[..<count])
    }

    private func line() throws -> String {
        while true {
            if let i = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = take(i + 1)
                return String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            }
            try fill()
        }
    }

    func readResponse(method: String) throws -> Response {
        let statusLine = try line()
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else { throw HTTPFailure.malformed(statusLine) }
        var response = Response(status: status, headers: [], body: [])
        while true {
            let header = try line()
            if header.isEmpty { break }
            guard let colon = header.firstIndex(of: ":") else { throw HTTPFailure.malformed(header) }
            response.headers.append((String(header[..<colon]), header[header.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        if method == "HEAD" || status == 101 || status == 204 || status == 304 {
            response.completedAt = Date()
            return response
        }
        if response.header("transfer-encoding")?.lowercased() == "chunked" {
            while true {
                let sizeLine = try line()
                guard let size = Int(sizeLine.split(separator: ";")[0], radix: 16) else { throw HTTPFailure.malformed(sizeLine) }
                if size == 0 { _ = try line(); break }
                while buffer.count < size + 2 { try fill() }
                if response.firstBodyByteAt == nil { response.firstBodyByteAt = Date() }
                response.body += take(size)
                _ = take(2)
            }
        } else if let length = response.header("content-length").flatMap(Int.init) {
            while buffer.count < length { try fill() }
            if length > 0 { response.firstBodyByteAt = Date() }
            response.body = take(length)
        } else {
            while (try? fill()) != nil {}
            response.body = take(buffer.count)
        }
        response.completedAt = Date()
        return response
    }
}
#endif
