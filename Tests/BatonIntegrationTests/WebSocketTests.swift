#if os(Linux)
import Foundation
import Glibc
import Logging
import NIOConcurrencyHelpers
import NIOSSL
import NIOWebSocket
import WSClient
import XCTest

/// Issue 21: WebSockets across upgrades (`hello`'s `/ws` echo). A drain closes each WebSocket
/// with 1001 (going away) at a random moment of its window, after the app's drain handler has
/// told the client, at a moment when no message is unanswered; the clients reconnect to the new
/// generation and no message goes unanswered.
final class WebSocketTests: IntegrationTestCase {
    struct ServerClose: Sendable {
        var client: String
        var code: WebSocketErrorCode
        var at: Date
        var noticeFirst: Bool
    }

    /// What every client saw.
    struct Tally: Sendable {
        var sent: [String: Set<Int>] = [:]
        var echoed: [String: Set<Int>] = [:]
        /// Closes the server started: (client, code, when, whether the drain notice came first).
        var serverCloses: [ServerClose] = []
        /// Connections a heeding client closed itself after the drain notice, by client.
        var moves: [String: Int] = [:]
        var connects = 0
        var errors: [String] = []
    }

    /// 20 clients go on writing until the server closes; 10 more heed the drain notice: they
    /// write no more there and close once their answers are in (no 1001 for them).
    func testWebSocketsAreClosedWith1001OverTheWindowAndNoMessageIsLost() throws {
        let hello = try startHello()
        let (clients, heeding) = (20, 10)
        let load = WebSocketLoad.start(clients, heeding: heeding, url: "ws://127.0.0.1:\(hello.port)/ws")
        defer { _ = load.stop() }
        let tally = load.tally
        Thread.sleep(forTimeInterval: 1)
        XCTAssertEqual(tally.withLockedValue { $0.connects }, clients + heeding, "\(tally.withLockedValue { $0.errors })")
        // The worker reports its connections by kind every second: status and metrics show them.
        var status = try baton(["status"], in: hello.directory.path)
        for _ in 0..<30 where !status.output.contains("\(clients + heeding) ws") {
            Thread.sleep(forTimeInterval: 0.1)
            status = try baton(["status"], in: hello.directory.path)
        }
        XCTAssertTrue(status.output.contains("CONNECTIONS") && status.output.contains("\(clients + heeding) ws"), status.description)
        let metrics = try baton(["metrics"], in: hello.directory.path)
        XCTAssertTrue(metrics.output.contains("baton_open_connections{generation=\"1\",state=\"serving\",kind=\"ws\"} \(clients + heeding)"), metrics.description)

        var upgrades: [Date] = []
        for generation in 1...2 {
            let old = try XCTUnwrap(hello.servingPid())
            upgrades.append(Date())
            hello.signal(SIGHUP)
            XCTAssertTrue(hello.waitForLog("worker generation \(generation) drained in", timeout: 20),
                          "generation \(generation) drained (its WebSockets closed)\n\(hello.logExcerpt())")
            XCTAssertNotEqual(hello.servingPid(), old)
            Thread.sleep(forTimeInterval: 1)
        }
        XCTAssertTrue(load.stop(), "the clients stopped")

        let result = tally.withLockedValue { $0 }
        XCTAssertEqual(result.errors, [], "no client failed to connect or broke off")
        var lost = 0
        for (client, sent) in result.sent { lost += sent.subtracting(result.echoed[client] ?? []).count }
        XCTAssertEqual(lost, 0, "every message sent was echoed (\(result.sent.values.map(\.count).reduce(0, +)) sent)")
        XCTAssertEqual(result.serverCloses.count, clients * 2, "each client was closed once per upgrade: \(result.serverCloses.map(\.client))")
        XCTAssertTrue(result.serverCloses.allSatisfy { $0.client.hasPrefix("c") }, "the server closed no heeding client: \(result.serverCloses.map(\.client))")
        XCTAssertEqual(result.moves.values.reduce(0, +), heeding * 2, "each heeding client moved once per upgrade: \(result.moves)")
        XCTAssertTrue(result.serverCloses.allSatisfy { $0.code == .goingAway }, "every close the server started is 1001: \(result.serverCloses.map(\.code))")
        XCTAssertTrue(result.serverCloses.allSatisfy(\.noticeFirst), "the app's drain handler told each client first")
        for (index, start) in upgrades.enumerated() {
            let end = index + 1 < upgrades.count ? upgrades[index + 1] : Date.distantFuture
            let times = result.serverCloses.map(\.at).filter { $0 >= start && $0 < end }.map { $0.timeIntervalSince(start) }
            guard let first = times.min(), let last = times.max() else { XCTFail("no close after upgrade \(index + 1)"); continue }
            // 20 closes at random moments of a 5 s window: spread over more than a second (a
            // burst would be within a few ms), and all within the window, the second a told
            // client has to close by itself and the quiet wait.
            XCTAssertGreaterThan(last - first, 1, "the closes of upgrade \(index + 1) are spread: \(times.sorted())")
            XCTAssertLessThan(last, 8.5, "the closes of upgrade \(index + 1) come within the window: \(times.sorted())")
        }
        XCTAssertEqual(hello.stop(timeout: 30), .exited(0))
    }

    /// WebSockets over TLS (`hello --wss-port`): the same drain behind NIOSSL, each close frame
    /// through TLS; counted as `wss`.
    func testSecureWebSocketsAreDrainedThroughTLS() throws {
        let wssPort = try freePort()
        let (cert, key) = try makeThrowawayCertificate(in: directory)
        let hello = try startHello(["--wss-port", String(wssPort), "--tls-cert", cert, "--tls-key", key])
        let clients = 10
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .none
        // (A host name: NIOSSL refuses an IP address as the server name.)
        let load = WebSocketLoad.start(clients, url: "wss://localhost:\(wssPort)/ws", tls: tls)
        defer { _ = load.stop() }
        let tally = load.tally
        XCTAssertTrue(poll(timeout: 10) { tally.withLockedValue { $0.connects } >= clients }, "\(tally.withLockedValue { $0.errors.prefix(3) })")
        var status = try baton(["status"], in: hello.directory.path)
        for _ in 0..<30 where !status.output.contains("\(clients) wss") {
            Thread.sleep(forTimeInterval: 0.1)
            status = try baton(["status"], in: hello.directory.path)
        }
        XCTAssertTrue(status.output.contains("\(clients) wss"), status.description)

        hello.signal(SIGHUP)
        XCTAssertTrue(hello.waitForLog("worker generation 1 drained in", timeout: 20), "generation 1 drained\n\(hello.logExcerpt())")
        XCTAssertTrue(poll(timeout: 10) { tally.withLockedValue { $0.connects } >= 2 * clients }, "the clients reconnected")
        Thread.sleep(forTimeInterval: 0.5)
        XCTAssertTrue(load.stop(), "the clients stopped")
        let result = tally.withLockedValue { $0 }
        XCTAssertEqual(result.errors.count, 0, "no client failed to connect or broke off (a close without close_notify is an error): \(result.errors.prefix(3))")
        var lost = 0
        for (client, sent) in result.sent { lost += sent.subtracting(result.echoed[client] ?? []).count }
        XCTAssertEqual(lost, 0, "every message sent was echoed (\(result.sent.values.map(\.count).reduce(0, +)) sent)")
        XCTAssertEqual(result.serverCloses.count, clients, "each client was closed once: \(result.serverCloses.map(\.client))")
        XCTAssertTrue(result.serverCloses.allSatisfy { $0.code == .goingAway && $0.noticeFirst }, "1001, after the notice: \(result.serverCloses)")
        XCTAssertEqual(hello.stop(timeout: 30), .exited(0))
    }

    /// Upgrades faster than the close window: an upgrade that would make three generations
    /// drain (the bound is two) hurries the oldest as its generation starts, which closes its
    /// WebSockets within a fifth of the window (a second; still with 1001) instead of over all
    /// of it, and the new generation takes over once the hurried one has exited.
    func testUpgradesFasterThanTheCloseWindowHurryTheOldestDrain() throws {
        let hello = try startHello()
        let clients = 20
        let load = WebSocketLoad.start(clients, url: "ws://127.0.0.1:\(hello.port)/ws")
        defer { _ = load.stop() }
        let tally = load.tally
        XCTAssertTrue(poll(timeout: 10) { tally.withLockedValue { $0.connects } >= clients }, "\(tally.withLockedValue { $0.errors })")

        // Each drain closes its WebSockets over 5 s, and its clients reconnect to the newest
        // generation: 2.5 s and 1 s apart, generations 1 and 2 still hold WebSockets when
        // generation 4 starts, and generation 3 would drain too when it takes over.
        for (generation, pause) in [(2, 2.5), (3, 1.0)] {
            hello.signal(SIGHUP)
            XCTAssertTrue(hello.waitForLog(" ready in ", moreThan: generation - 1, timeout: 20), "generation \(generation) ready\n\(hello.logExcerpt())")
            Thread.sleep(forTimeInterval: pause)
        }
        let hurried = Date()
        hello.signal(SIGHUP)
        XCTAssertTrue(hello.waitForLog("hurried: 2 generations draining and 1 to drain at the next take-over, at most 2 may", timeout: 10),
                      "the oldest drain was hurried as generation 4 started\n\(hello.logExcerpt())")
        XCTAssertTrue(hello.waitForLog(", generation 3 draining", timeout: 20),
                      "generation 4 took over\n\(hello.logExcerpt())")
        // Hurried: each close within a fifth of the window (1 s), after the second a told client
        // has to close by itself and at most a second for a quiet moment.
        XCTAssertTrue(poll(timeout: max(0, 4 - Date().timeIntervalSince(hurried))) {
            hello.log.range(of: #"generation 1 \(pid \d+, version [^)]*\) drained in"#, options: .regularExpression) != nil
        }, "hurried, generation 1 closed its WebSockets and exited within 4 s\n\(hello.logExcerpt())")
        // Never three at once: generation 3 began draining only once one of the two draining
        // generations had exited. Usually that is the hurried generation 1; generation 2 may end
        // first when its last WebSocket client happens to close early in its window.
        let log = hello.log
        XCTAssertNotNil(log.range(of: #"generation 1 \(pid \d+, version [^)]*\) hurried: 2 generations"#, options: .regularExpression), "the oldest was hurried")
        let takeover = try XCTUnwrap(log.range(of: #"generation 4 \(pid \d+, version [^)]*\) ready in \d+ ms, generation 3 draining"#, options: .regularExpression))
        let firstExit = try XCTUnwrap([1, 2].compactMap {
            log.range(of: #"generation \#($0) \(pid \d+, version [^)]*\) drained in"#, options: .regularExpression)?.lowerBound
        }.min(), "neither generation 1 nor 2 exited\n\(hello.logExcerpt())")
        XCTAssertLessThan(firstExit, takeover.lowerBound, "generation 3 began draining while generations 1 and 2 still drained\n\(hello.logExcerpt())")
        XCTAssertEqual(hello.logCount("hurried:"), 1, "only the oldest was hurried\n\(hello.logExcerpt())")
        XCTAssertTrue(load.stop(), "the clients stopped")
        let result = tally.withLockedValue { $0 }
        XCTAssertEqual(result.errors, [])
        XCTAssertTrue(result.serverCloses.allSatisfy { $0.code == .goingAway }, "hurried or not, every close the server started is 1001: \(result.serverCloses.map(\.code))")
        XCTAssertEqual(hello.stop(timeout: 30), .exited(0))
    }
}

/// The WebSocket clients of the tests: echo clients that reconnect, until stopped.
final class WebSocketLoad: Sendable {
    /// What the clients saw so far.
    let tally = NIOLockedValueBox(WebSocketTests.Tally())
    private let stopping = NIOLockedValueBox(false)
    private let finished = NIOLockedValueBox(false)

    private init() {}

    /// Starts `count` clients of `url` that go on writing until the server closes (named c0, c1,
    /// …), and `heeding` that heed the drain notice (h0, h1, …).
    /// With `tls`, over TLS (wss).
    static func start(_ count: Int, heeding: Int = 0, url: String, tls: TLSConfiguration? = nil) -> WebSocketLoad {
        let load = WebSocketLoad()
        Task.detached {
            await runClients(count, heeding: heeding, url: url, tls: tls, tally: load.tally, stop: load.stopping, logger: Logger(label: "ws-test"))
            load.finished.withLockedValue { $0 = true }
        }
        return load
    }

    /// Stops every client (each closes its connection); false if they did not within 10 s.
    func stop() -> Bool {
        stopping.withLockedValue { $0 = true }
        return poll(timeout: 10, interval: 0.05) { finished.withLockedValue { $0 } }
    }

    private static func runClients(_ count: Int, heeding: Int, url: String, tls: TLSConfiguration?, tally: NIOLockedValueBox<WebSocketTests.Tally>, stop: NIOLockedValueBox<Bool>, logger: Logger) async {
        await withTaskGroup(of: Void.self) { group in
            for index in 0..<count {
                group.addTask { await runClient("c\(index)", heeds: false, url: url, tls: tls, tally: tally, stop: stop, logger: logger) }
            }
            for index in 0..<heeding {
                group.addTask { await runClient("h\(index)", heeds: true, url: url, tls: tls, tally: tally, stop: stop, logger: logger) }
            }
        }
    }

    /// One client: connects, sends a numbered message every 100 ms and records the echoes; when
    /// the server closes, records how and reconnects, until `stop`. A client that `heeds` the
    /// drain notice writes no more on that connection, closes it once its answers are in (3 s at
    /// most) and reconnects.
    static func runClient(_ name: String, heeds: Bool, url: String, tls: TLSConfiguration?, tally: NIOLockedValueBox<WebSocketTests.Tally>, stop: NIOLockedValueBox<Bool>, logger: Logger) async {
        let next = NIOLockedValueBox(0)
        while !stop.withLockedValue({ $0 }) {
            let notice = NIOLockedValueBox(false)
            let moved = NIOLockedValueBox(false)
            do {
                let close = try await WebSocketClient.connect(url: url, tlsConfiguration: tls, logger: logger) { inbound, outbound, _ in
                    tally.withLockedValue { $0.connects += 1 }
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask {
                            var mine = Set<Int>()
                            while !stop.withLockedValue({ $0 }) {
                                if heeds, notice.withLockedValue({ $0 }) {
                                    for _ in 0..<300 where !tally.withLockedValue({ [mine] in mine.isSubset(of: $0.echoed[name] ?? []) }) {
                                        try await Task.sleep(for: .milliseconds(10))
                                    }
                                    moved.withLockedValue { $0 = true }
                                    return
                                }
                                let sequence = next.withLockedValue { value in defer { value += 1 }; return value }
                                try await outbound.write(.text("\(name) \(sequence)"))
                                mine.insert(sequence)
                                tally.withLockedValue { _ = $0.sent[name, default: []].insert(sequence) }
                                try await Task.sleep(for: .milliseconds(100))
                            }
                        }
                        group.addTask {
                            for try await message in inbound.messages(maxSize: 1 << 16) {
                                guard case .text(let text) = message else { continue }
                                if text.hasPrefix("baton: draining") {
                                    notice.withLockedValue { $0 = true }
                                } else if let sequence = text.split(separator: " ").last.flatMap({ Int($0) }) {
                                    tally.withLockedValue { _ = $0.echoed[name, default: []].insert(sequence) }
                                }
                            }
                        }
                        // The server closed (the inbound messages end), or the test stops
                        // (the sender ends): either way this connection is done.
                        _ = try await group.next()
                        group.cancelAll()
                    }
                }
                if moved.withLockedValue({ $0 }) {
                    tally.withLockedValue { $0.moves[name, default: 0] += 1 }
                } else if let close, !stop.withLockedValue({ $0 }) {
                    let first = notice.withLockedValue { $0 }
                    tally.withLockedValue { $0.serverCloses.append(WebSocketTests.ServerClose(client: name, code: close.closeCode, at: Date(), noticeFirst: first)) }
                }
            } catch {
                if !stop.withLockedValue({ $0 }) { tally.withLockedValue { $0.errors.append("\(name): \(error)") } }
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
    }
}
#endif
