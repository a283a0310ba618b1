#if os(Linux)
import Foundation
import Glibc

/// What a load run saw: counts, the first failures, and which worker pids answered.
package struct LoadReport: Sendable, CustomStringConvertible {
    package var successes = 0
    package var failures = 0
    /// Of the failures, answers with a status other than 200 (the rest are socket errors).
    package var statusFailures = 0
    /// The first few failures, with the client and the time since the start of the load.
    package var firstFailures: [String] = []
    /// Answers per worker pid.
    package var answersByPid: [pid_t: Int] = [:]
    /// Worker pids in the order they first answered.
    package var pidOrder: [pid_t] = []
    /// Successful responses that carried `Connection: close` (keep-alive clients then reconnect).
    package var closingResponses = 0
    /// Connections the keep-alive clients opened (one each, plus one per reconnect).
    package var keepAliveConnects = 0
    /// Client threads that did not finish within the stop timeout (0 after a clean stop).
    package var stuckClients = 0
    /// The slowest successful request, in seconds (connect included for new connections).
    package var slowest: TimeInterval = 0
    /// Clients that ended because the port refused connections after it was closed on purpose
    /// (see `LoadRunner.portClosed`).
    package var endedByRefusal = 0

    package var pids: Set<pid_t> { Set(answersByPid.keys) }

    package var description: String {
        var text = "\(successes) ok, \(failures) failed (\(statusFailures) by status), \(closingResponses) with Connection: close, "
        text += "\(keepAliveConnects) keep-alive connects, "
        text += "slowest \(Int(slowest * 1000)) ms, "
        text += "pids (first-seen order, answers): "
        text += pidOrder.map { "\($0):\(answersByPid[$0] ?? 0)" }.joined(separator: " ")
        if stuckClients > 0 { text += ", \(stuckClients) clients stuck" }
        if endedByRefusal > 0 { text += ", \(endedByRefusal) clients ended by a refused connect after the port closed" }
        if !firstFailures.isEmpty { text += "\nfirst failures:\n  " + firstFailures.joined(separator: "\n  ") }
        return text
    }
}

/// Shared counters of a load run (one lock; a request costs far more than taking it).
package final class LoadStats: @unchecked Sendable {
    private let lock = NSLock()
    private var report = LoadReport()
    private var stopping = false
    private let start = Date()
    package static let keptFailures = 10

    package func success(pid: pid_t, closing: Bool, took: TimeInterval = 0) {
        lock.lock()
        defer { lock.unlock() }
        report.successes += 1
        report.slowest = max(report.slowest, took)
        if closing { report.closingResponses += 1 }
        if let n = report.answersByPid[pid] {
            report.answersByPid[pid] = n + 1
        } else {
            report.answersByPid[pid] = 1
            report.pidOrder.append(pid)
        }
    }

    package func failure(_ failure: HTTPFailure, client: String) {
        let elapsed = String(format: "%.3f", Date().timeIntervalSince(start))
        lock.lock()
        defer { lock.unlock() }
        report.failures += 1
        if case .status = failure { report.statusFailures += 1 }
        if report.firstFailures.count < LoadStats.keptFailures {
            report.firstFailures.append("t+\(elapsed)s \(client): \(failure)")
        }
    }

    package var snapshot: LoadReport {
        lock.lock()
        defer { lock.unlock() }
        return report
    }

    package var isStopping: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopping
    }

    package func connected() {
        lock.lock()
        report.keepAliveConnects += 1
        lock.unlock()
    }

    package func endedByRefusal() {
        lock.lock()
        report.endedByRefusal += 1
        lock.unlock()
    }

    package func requestStop() {
        lock.lock()
        stopping = true
        lock.unlock()
    }
}

/// Runs `keepAlive` clients that reuse their connection (reconnecting after a response with
/// `Connection: close` or after a failure) and `perRequest` clients that open a connection per
/// request, each on its own thread, all sending `GET /hello` back to back.
package final class LoadRunner: @unchecked Sendable {
    package let port: UInt16
    package let keepAliveClients: Int
    package let perRequestClients: Int
    package let stats = LoadStats()
    private let group = DispatchGroup()
    private let lock = NSLock()
    private var running = 0
    private var started = false
    private var finalReport: LoadReport?

    /// With a `portClosed` check, a client whose connect is refused (ECONNREFUSED) asks it
    /// (waiting up to `refusalGrace` for it to turn true, since the master logs the close just
    /// after it happens) and, if the port was closed on purpose, stops: that port is gone, which
    /// is not a failed request. Every other error, and a refusal while the port should be open,
    /// still counts as a failure.
    package let portClosed: (@Sendable () -> Bool)?
    package let refusalGrace: TimeInterval

    package init(port: UInt16, keepAlive: Int, perRequest: Int, portClosed: (@Sendable () -> Bool)? = nil, refusalGrace: TimeInterval = 2) {
        self.port = port
        self.keepAliveClients = keepAlive
        self.perRequestClients = perRequest
        self.portClosed = portClosed
        self.refusalGrace = refusalGrace
    }

    /// True when `failure` is a refused connect on a port that was closed on purpose.
    private func isEndOfPort(_ failure: HTTPFailure) -> Bool {
        guard let portClosed, case .connect(let e) = failure, e == ECONNREFUSED else { return false }
        return poll(timeout: refusalGrace, interval: 0.01) { portClosed() }
    }

    package func start() {
        precondition(!started)
        started = true
        for i in 0..<keepAliveClients {
            spawn(name: "keep-alive#\(i)") { [self] in keepAliveLoop(name: "keep-alive#\(i)") }
        }
        for i in 0..<perRequestClients {
            spawn(name: "per-request#\(i)") { [self] in perRequestLoop(name: "per-request#\(i)") }
        }
    }

    private func spawn(name: String, _ body: @escaping @Sendable () -> Void) {
        group.enter()
        lock.lock(); running += 1; lock.unlock()
        let thread = Thread { [self] in
            body()
            lock.lock(); running -= 1; lock.unlock()
            group.leave()
        }
        thread.name = name
        thread.start()
    }

    /// Validates one response: 200 with a pid is a success, anything else a failure.
    private func record(_ response: HTTPResponse, client: String, since start: Date) {
        guard response.status == 200 else {
            stats.failure(.status(response.status, body: response.bodyText), client: client)
            return
        }
        guard let pid = response.pid else {
            stats.failure(.noPid(body: response.bodyText), client: client)
            return
        }
        stats.success(pid: pid, closing: response.connectionClose, took: Date().timeIntervalSince(start))
    }

    private func keepAliveLoop(name: String) {
        var connection: HTTPConnection? = nil
        while !stats.isStopping {
            let start = Date()
            do throws(HTTPFailure) {
                let conn: HTTPConnection
                if let connection {
                    conn = connection
                } else {
                    conn = try HTTPConnection(port: port)
                    stats.connected()
                }
                connection = conn
                let response = try conn.get("/hello")
                if response.connectionClose {
                    conn.close()
                    connection = nil
                }
                record(response, client: name, since: start)
            } catch {
                connection?.close()
                connection = nil
                if isEndOfPort(error) {
                    stats.endedByRefusal()
                    break
                }
                stats.failure(error, client: name)
                Thread.sleep(forTimeInterval: 0.02)  // no hot loop while the server is away
            }
        }
        connection?.close()
    }

    private func perRequestLoop(name: String) {
        while !stats.isStopping {
            let start = Date()
            switch httpGetOnce(port: port) {
            case .success(let response):
                record(response, client: name, since: start)
            case .failure(let error):
                if isEndOfPort(error) {
                    stats.endedByRefusal()
                    return
                }
                stats.failure(error, client: name)
                Thread.sleep(forTimeInterval: 0.02)
            }
        }
    }

    /// Waits (bounded) until a pid outside `known` has answered; returns it.
    package func waitForPid(notIn known: Set<pid_t>, timeout: TimeInterval) -> pid_t? {
        var found: pid_t? = nil
        poll(timeout: timeout, interval: 0.02) {
            found = stats.snapshot.pidOrder.first { !known.contains($0) }
            return found != nil
        }
        return found
    }

    /// Asks every client to stop after its current request and waits for them (bounded; a client
    /// blocked in recv leaves within its 10 s receive timeout). Idempotent.
    @discardableResult
    package func stop(timeout: TimeInterval = 20) -> LoadReport {
        if let finalReport { return finalReport }
        stats.requestStop()
        _ = group.wait(timeout: .now() + timeout)
        var report = stats.snapshot
        lock.lock()
        report.stuckClients = running
        lock.unlock()
        finalReport = report
        return report
    }
}
#endif
