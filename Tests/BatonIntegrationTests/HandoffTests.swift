#if os(Linux)
import Foundation
import Glibc
import XCTest

/// Issue 13: an upgrade closes no keep-alive connection. The draining generation hands each one
/// to the new generation (SCM_RIGHTS) at a request boundary; a successor that cannot take them
/// gets none, and the old generation closes them gracefully as before.
final class HandoffTests: IntegrationTestCase {

    /// Connections opened before an upgrade are answered by the new generation afterwards, on the
    /// same client sockets and without `Connection: close`, twice over.
    func testIdleConnectionsMoveToTheNewGeneration() throws {
        let hello = try startHello()
        let connections = try (0..<20).map { _ in try HTTPConnection(port: hello.port) }
        var generation = try XCTUnwrap(try connections[0].get("/hello").pid)
        hello.track(generation)
        for round in 1...2 {
            for connection in connections {
                let answer = try connection.get("/hello")
                XCTAssertEqual(answer.pid, generation, "round \(round): before the upgrade")
                XCTAssertFalse(answer.connectionClose)
            }
            let handedBefore = hello.logCount("20 connection(s) handed over, 0 closed")
            hello.signal(SIGHUP)
            XCTAssertTrue(hello.waitForLog("20 connection(s) handed over, 0 closed", moreThan: handedBefore, timeout: 30),
                          "round \(round): the old generation did not hand the 20 connections over\n\(hello.logExcerpt())")
            let survivors = waitForChildren(hello, count: 1, timeout: 30, "round \(round): after the hand-over")
            let next = try XCTUnwrap(survivors.first)
            XCTAssertNotEqual(next, generation)
            hello.track(next)
            for connection in connections {
                let answer = try connection.get("/hello")
                XCTAssertEqual(answer.pid, next, "round \(round): the same client socket is served by the new generation")
                XCTAssertFalse(answer.connectionClose, "round \(round): a handed-over connection stays open")
            }
            generation = next
        }
        XCTAssertEqual(hello.stop(timeout: 30), .exited(0))
    }

    /// Keep-alive clients under load across 5 upgrades: no failed request, no `Connection: close`,
    /// and no client ever had to reconnect.
    func testUpgradesUnderKeepAliveLoadCloseNoConnection() throws {
        let hello = try startHello()
        let clients = 32
        let load = startLoad(hello, keepAlive: clients, perRequest: 0)
        _ = try firstPid(load)
        let (report, _) = upgradeBySIGHUP(hello, under: load, times: 5)
        XCTAssertEqual(report.closingResponses, 0, "responses that closed a connection: \(report)")
        XCTAssertEqual(report.keepAliveConnects, clients, "reconnects: \(report)")
        let drained = hello.logLines(containing: "handed over").joined(separator: "\n")
        XCTAssertEqual(hello.logCount(", 0 closed"), 5, drained)
    }

    /// A request whose first half arrived before the upgrade is answered (by the old generation,
    /// which read that half), and the connection then moves on to the new generation.
    func testHalfSentRequestIsAnsweredThenTheConnectionMoves() throws {
        let hello = try startHello()
        let connection = try HTTPConnection(port: hello.port)
        let old = try XCTUnwrap(try connection.get("/hello").pid)
        hello.track(old)
        try connection.send(raw: "GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-")
        Thread.sleep(forTimeInterval: 0.2)  // read by the old generation
        hello.signal(SIGHUP)
        var new: pid_t?
        poll(timeout: 30, interval: 0.05) {
            if case .success(let answer) = hello.get(), let pid = answer.pid, pid != old { new = pid }
            return new != nil
        }
        let next = try XCTUnwrap(new, "the new generation did not answer within 30 s")
        hello.track(next)
        XCTAssertTrue(Proc.isAlive(old), "the old generation should wait for the rest of the request")
        try connection.send(raw: "Agent: half-sent\r\n\r\n")
        let answer = try connection.readResponse()
        XCTAssertEqual(answer.status, 200)
        XCTAssertEqual(answer.pid, old, "the generation that read the first half answers")
        XCTAssertFalse(answer.connectionClose, "the connection is handed over, not closed")
        // It goes at its moment within the hand-over's spread (up to 100 ms here); until then
        // the old generation may answer it.
        XCTAssertTrue(hello.waitForLog("1 connection(s) handed over, 0 closed", moreThan: 0, timeout: 10), hello.logExcerpt())
        let after = try connection.get("/hello")
        XCTAssertEqual(after.pid, next, "the same connection, now served by the new generation")
        XCTAssertFalse(after.connectionClose)
    }

    /// A request sent whole around the moment of the hand-over is answered once, by one of the two
    /// generations: one waiting unread in the kernel when its connection's moment comes is
    /// answered by the old generation first; one that arrives while the socket is on its way
    /// travels with it and the new generation answers it.
    func testRequestsWaitingInTheKernelTravelWithTheSocket() throws {
        let hello = try startHello()
        let connections = try (0..<50).map { _ in try HTTPConnection(port: hello.port) }
        let old = try XCTUnwrap(try connections[0].get("/hello").pid)
        hello.track(old)
        hello.signal(SIGHUP)
        // Each connection's next request, sent at once, around the moment of the hand-over.
        poll(timeout: 30, interval: 0.01) { hello.logCount("draining (SIGTERM)") > 0 }
        for connection in connections { try connection.send(raw: "GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") }
        var pids: Set<pid_t> = []
        for connection in connections {
            let answer = try connection.readResponse()
            XCTAssertEqual(answer.status, 200)
            XCTAssertFalse(answer.connectionClose)
            if let pid = answer.pid { pids.insert(pid) }
        }
        let survivors = waitForChildren(hello, count: 1, timeout: 30, "after the hand-over")
        hello.track(survivors)
        for connection in connections {
            XCTAssertEqual(try connection.get("/hello").pid, survivors.first, "every connection ends on the new generation")
        }
        XCTAssertTrue(pids.isSubset(of: Set([old] + survivors)), "answered by \(pids)")
        XCTAssertEqual(hello.logCount("50 connection(s) handed over, 0 closed"), 1, hello.logExcerpt())
    }

    /// The old generation keeps a copy of each connection it hands over for a while (its loan,
    /// 2 s), to take it back should the new generation die. A connection the new generation
    /// closes meanwhile must still end for the client at once: `close(2)` of one copy alone
    /// would leave the socket open, and the client without its end-of-file, until the loan ends.
    func testAConnectionClosedDuringItsLoanEndsAtOnce() throws {
        let hello = try startHello()
        let connection = try HTTPConnection(port: hello.port)
        let old = try XCTUnwrap(try connection.get("/hello").pid)
        hello.track(old)
        // A request half sent keeps the old generation, and so its loans, alive.
        let holder = try HTTPConnection(port: hello.port)
        XCTAssertEqual(try holder.get("/hello").pid, old)
        try holder.send(raw: "GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-")
        Thread.sleep(forTimeInterval: 0.2)  // read by the old generation
        hello.signal(SIGHUP)
        // Asked every 20 ms, the connection is idle at a request boundary between two requests:
        // it goes over at its moment, and its next request is answered by the new generation.
        var new: pid_t?
        var movedAt = Date()
        poll(timeout: 30, interval: 0.02) {
            guard let pid = (try? connection.get("/hello"))?.pid else { return false }
            if pid != old { new = pid; movedAt = Date() }
            return new != nil
        }
        let next = try XCTUnwrap(new, "the connection was not answered by a new generation within 30 s\n\(hello.logExcerpt())")
        hello.track(next)
        let answer = try connection.get("/hello", closeConnection: true)
        let answeredAt = Date()
        XCTAssertEqual(answer.pid, next)
        XCTAssertTrue(answer.connectionClose)
        XCTAssertEqual(try connection.readToEndOfFile(), [], "nothing after the last response")
        let endOfFile = Date().timeIntervalSince(answeredAt)
        // The loan (2 s from the send, while the old generation lives) was still running when
        // the new generation closed.
        XCTAssertLessThan(answeredAt.timeIntervalSince(movedAt), 1.0, "too slow for the loan to matter: the test proves nothing")
        XCTAssertTrue(Proc.isAlive(old), "the old generation, and its loans, should still be there")
        XCTAssertLessThan(endOfFile, 0.5, "the client's end-of-file came \(endOfFile) s after the closing response")
        try holder.send(raw: "Agent: half-sent\r\n\r\n")
        XCTAssertEqual(try holder.readResponse().pid, old, "the generation that read the first half answers")
        XCTAssertEqual(hello.stop(timeout: 30), .exited(0))
    }

    /// A successor that does not take connections (a Python worker under the same master): the
    /// master says so once, the old generation closes its keep-alive connections gracefully, and
    /// no request fails.
    func testSuccessorThatCannotTakeConnectionsGetsNone() throws {
        let hello = try startHello()
        let (load, old) = try startLoadOnOneWorker(hello, keepAlive: 8, perRequest: 0, "before the upgrade")
        try hello.replaceBinary(withScript: "#!/bin/sh\nexec \(try Locations.python()) \(Locations.pythonWorker.path)\n")
        hello.signal(SIGHUP)
        guard let new = load.waitForPid(notIn: [old], timeout: 30) else {
            return XCTFail("the Python generation did not answer: \(load.stats.snapshot)\n\(hello.logExcerpt())")
        }
        hello.track(new)
        waitForChildren(hello, toBe: [new], timeout: 30, "after the old generation drained")
        let report = load.stop()
        XCTAssertEqual(report.failures, 0, "\(report)")
        XCTAssertGreaterThan(report.keepAliveConnects, 8, "the old generation closed its connections, so clients reconnected: \(report)")
        XCTAssertEqual(hello.logCount("does not take connections over"), 1, hello.logExcerpt())
        XCTAssertEqual(hello.logCount("handed over"), 0, hello.logExcerpt())
    }
}
#endif
