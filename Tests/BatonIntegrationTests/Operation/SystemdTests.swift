#if os(Linux)
import Baton
import Foundation
import Glibc
import XCTest

/// The master as a systemd service: what it tells systemd's notify socket, and socket activation.
final class SystemdTests: OperationTestCase {
    /// With NOTIFY_SOCKET set, `baton run` tells "systemd" (here: the test's own datagram socket)
    /// READY=1 once serving; RELOADING=1 with MONOTONIC_USEC and then READY=1 around an upgrade
    /// (Type=notify-reload); STOPPING=1 at shutdown; and nothing else. Workers never get that socket.
    func testBatonRunNotifiesSystemdOfReadyReloadingAndStopping() throws {
        let port = try freePort()
        let systemd = try NotifyListener(path: "\(directory)/systemd-notify.sock")
        let seen = "\(directory)/worker-notify-socket.txt"
        // The worker: records the NOTIFY_SOCKET it was given, then becomes the Python worker.
        let script = "\(directory)/worker.sh"
        try write("""
            #!/bin/sh
            printf '%s\\n' "${NOTIFY_SOCKET:-unset}" >> '\(seen)'
            exec '\(try Locations.python())' '\(Locations.pythonWorker.path)'

            """, to: script, mode: 0o755)
        let master = try start(try Locations.product("baton"), ["run", "--listen", "127.0.0.1:\(port)", "--", script],
                               environment: cleanEnvironment(["NOTIFY_SOCKET": systemd.path]))
        try checkNotifySequence(master, port: port, systemd: systemd)

        // What each worker saw itself, at its start.
        let given = ((try? String(contentsOfFile: seen, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        XCTAssertEqual(given.count, 2, "NOTIFY_SOCKET seen by the workers: \(given)")
        for socket in given {
            XCTAssertTrue(socket.hasPrefix("@baton/"), "a worker got NOTIFY_SOCKET=\(socket)")
        }
    }

    /// The same for the embedded master of `hello`, which hello.service runs.
    func testHelloNotifiesSystemdOfReadyReloadingAndStopping() throws {
        let port = try freePort()
        let systemd = try NotifyListener(path: "\(directory)/systemd-notify.sock")
        let master = try start(try Locations.product("hello"), ["--port", String(port), "--drain-timeout", "10"],
                               environment: cleanEnvironment(["NOTIFY_SOCKET": systemd.path]))
        try checkNotifySequence(master, port: port, systemd: systemd)
    }

    /// Start → READY=1 (STATUS); SIGHUP → RELOADING=1 (MONOTONIC_USEC, STATUS) then READY=1;
    /// SIGTERM → STOPPING=1; exit 0; nothing more. Each worker's NOTIFY_SOCKET (in the environment
    /// it was started with) is the master's own `@baton/…`, not systemd's.
    private func checkNotifySequence(_ master: TestProcess, port: UInt16, systemd: NotifyListener,
                                     file: StaticString = #filePath, line: UInt = #line) throws {
        func expect(_ condition: Bool, _ message: @autoclosure () -> String) {
            XCTAssertTrue(condition, message(), file: file, line: line)
        }
        var workerSockets: [String] = []
        func recordWorkerSocket(_ pid: pid_t) {
            guard let environment = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/environ")) else { return }
            let variables = environment.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            workerSockets.append(variables.first { $0.hasPrefix("NOTIFY_SOCKET=") }.map { String($0.dropFirst("NOTIFY_SOCKET=".count)) } ?? "unset")
        }

        guard let started = systemd.next(timeout: 30) else { return XCTFail("no sd_notify message within 30 s of the start", file: file, line: line) }
        let ready = notifyFields(started)
        expect(ready["READY"] == "1", "first message: \(started.debugDescription)")
        expect(!(ready["STATUS"] ?? "").isEmpty, "READY=1 without STATUS: \(started.debugDescription)")
        expect(ready["RELOADING"] == nil, started)
        let firstPid = try waitUntilServing(port: port, master: master, file: file, line: line).pid!
        recordWorkerSocket(firstPid)

        // SIGHUP, as systemd's ReloadSignal= sends it.
        let beforeSignal = monotonicMicroseconds()
        master.signal(SIGHUP)
        guard let reloadingText = systemd.next(timeout: 30) else { return XCTFail("no RELOADING=1 within 30 s of SIGHUP", file: file, line: line) }
        let afterMessage = monotonicMicroseconds()
        let reloading = notifyFields(reloadingText)
        expect(reloading["RELOADING"] == "1", "after SIGHUP: \(reloadingText.debugDescription)")
        expect(reloading["READY"] == nil, reloadingText)
        if let text = reloading["MONOTONIC_USEC"], let usec = UInt64(text) {
            // Type=notify-reload only counts a RELOADING=1 stamped after it sent the signal.
            expect(usec >= beforeSignal, "MONOTONIC_USEC \(usec) is before the SIGHUP (\(beforeSignal))")
            expect(usec <= afterMessage, "MONOTONIC_USEC \(usec) is after the message arrived (\(afterMessage))")
        } else {
            XCTFail("RELOADING=1 without a numeric MONOTONIC_USEC: \(reloadingText.debugDescription)", file: file, line: line)
        }
        expect(reloading["STATUS"]?.contains("SIGHUP") ?? false, reloadingText)

        guard let reloadedText = systemd.next(timeout: 30) else { return XCTFail("no READY=1 within 30 s after RELOADING=1", file: file, line: line) }
        let reloaded = notifyFields(reloadedText)
        expect(reloaded["READY"] == "1", "after the upgrade: \(reloadedText.debugDescription)")
        expect(reloaded["STATUS"]?.contains("ready in") ?? false, "status after the upgrade: \(reloadedText.debugDescription)")
        if let secondPid = waitForNewPid(port: port, master: master, old: firstPid) {
            recordWorkerSocket(secondPid)
        } else {
            XCTFail("no new worker after SIGHUP", file: file, line: line)
        }

        master.signal(SIGTERM)
        guard let stoppingText = systemd.next(timeout: 30) else { return XCTFail("no STOPPING=1 within 30 s of SIGTERM", file: file, line: line) }
        let stopping = notifyFields(stoppingText)
        expect(stopping["STOPPING"] == "1", "after SIGTERM: \(stoppingText.debugDescription)")
        expect(stopping["READY"] == nil, stoppingText)
        XCTAssertEqual(master.waitForExit(timeout: 30), .exited(0), file: file, line: line)
        let extra = systemd.next(timeout: 0.3)
        expect(extra == nil, "a message after STOPPING=1: \(extra ?? "")")

        expect(workerSockets.count == 2, "NOTIFY_SOCKET of the workers: \(workerSockets)")
        for socket in workerSockets {
            expect(socket.hasPrefix("@baton/\(master.pid)/"), "a worker was started with NOTIFY_SOCKET=\(socket)")
            expect(socket != systemd.path, "a worker was started with systemd's NOTIFY_SOCKET")
        }
    }

    /// Under `systemd-socket-activate` (what a .socket unit does), `baton run` adopts the socket
    /// instead of binding one, serves on it and upgrades on it.
    func testBatonRunAdoptsSocketFromSocketActivation() throws {
        let activate = try socketActivateTool()
        let port = try freePort()
        let master = try start(activate, ["-l", "127.0.0.1:\(port)", "--fdname=web", "--",
                                          try Locations.product("baton"), "run", "--", try Locations.python(), Locations.pythonWorker.path])
        try checkAdoptsAndUpgrades(master, port: port, name: "web")
    }

    /// The same with the embedded master of `hello` (as hello.service with hello.socket runs it):
    /// its --port is ignored in favour of the socket it was given.
    func testHelloAdoptsSocketFromSocketActivation() throws {
        let activate = try socketActivateTool()
        let port = try freePort()
        let unused = try freePort()
        let master = try start(activate, ["-l", "127.0.0.1:\(port)", "--fdname=http", "--",
                                          try Locations.product("hello"), "--port", String(unused), "--drain-timeout", "10"])
        try checkAdoptsAndUpgrades(master, port: port, name: "http")
        XCTAssertNotEqual(unused, port)
        if case .success = httpGetOnce(port: unused, timeout: 2) { XCTFail("hello also bound its --port \(unused)") }
    }

    /// With a watch.conf too (the deploy workflow): the adopted socket wins over `HttpPort`,
    /// which is not bound, before and after an upgrade.
    func testBatonRunWithWatchConfAdoptsSocketFromSocketActivation() throws {
        let activate = try socketActivateTool()
        let port = try freePort()
        let httpPort = try freePort()
        let app = "\(directory)/app"
        XCTAssertEqual(mkdir(app, 0o755), 0)
        chmod(app, 0o755)
        let source = try String(contentsOf: Locations.pythonWorker, encoding: .utf8)
        try write(source.replacingOccurrences(of: "#!/usr/bin/env python3", with: "#!\(try Locations.python())"),
                  to: "\(app)/app.py", mode: 0o755)
        try write(#"{"HttpPort":"\#(httpPort)","Ver":"7","DelaySecond":0.2,"BinName":"app.py"}"#, to: "\(app)/watch.conf", mode: 0o644)
        let master = try start(activate, ["-l", "127.0.0.1:\(port)", "--fdname=web", "--",
                                          try Locations.product("baton"), "run", "--config", "watch.conf"], in: app)
        XCTAssertTrue(master.waitForLog("Listening on 127.0.0.1:\(port)", timeout: 20), "systemd-socket-activate did not listen")
        let first = try waitUntilServing(port: port, master: master)
        XCTAssertTrue(first.bodyText.contains("7"), first.bodyText)
        XCTAssertTrue(master.waitForLog("adopted 1 listener(s) from socket activation: web", timeout: 10), "no adoption logged")
        let reload = try baton(["reload"], in: app)
        XCTAssertEqual(reload.exitCode, 0, "\(reload)")
        XCTAssertNotNil(waitForNewPid(port: port, master: master, old: first.pid!), "no new worker on the adopted socket after the reload")
        if case .success = httpGetOnce(port: UInt16(httpPort), timeout: 2) { XCTFail("the master also bound HttpPort \(httpPort)") }
        master.signal(SIGTERM)
        XCTAssertEqual(master.waitForExit(timeout: 30), .exited(0))
    }

    /// `baton run` under socket activation and a notify socket, with a worker that ties its life to
    /// its spawning thread (`PR_SET_PDEATHSIG`, as protocol-1 workers do): `baton reload --master`
    /// re-executes the master (same pid), systemd hears RELOADING=1 then READY=1, the adopted
    /// socket keeps serving the next generation, and the old worker never got its parent-death
    /// signal (the exec runs on the thread that spawned it).
    func testMasterReexecutionUnderSocketActivationKeepsOldWorkersAndTellsSystemd() throws {
        let activate = try socketActivateTool()
        let port = try freePort()
        let systemd = try NotifyListener(path: "\(directory)/systemd-notify.sock")
        let probe = "\(directory)/probe.py"
        let events = "\(directory)/events.txt"
        try write("""
            import ctypes, os, signal, socket, sys, time
            # A protocol-1 worker: parent-death signal tied to the spawning thread.
            def died(*_):
                open(sys.argv[1], "a").write("parent-death %d\\n" % os.getpid())
            signal.signal(signal.SIGUSR1, died)
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGUSR1, 0, 0, 0)
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            listener = socket.socket(fileno=3)
            open(sys.argv[1], "a").write("started %d protocol=%s\\n" % (os.getpid(), os.environ.get("BATON_PROTOCOL")))
            while True:
                connection, _ = listener.accept()
                connection.recv(65536)
                body = b"{\\"pid\\":%d}" % os.getpid()
                connection.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\nConnection: close\\r\\n\\r\\n%s" % (len(body), body))
                connection.close()
            """, to: probe, mode: 0o644)
        // systemd-socket-activate passes on only the variables named with -E.
        let master = try start(activate, ["-l", "127.0.0.1:\(port)", "--fdname=web", "-E", "NOTIFY_SOCKET=\(systemd.path)", "--",
                                          try Locations.product("baton"), "run", "--ready", "uptime:0.3", "--drain-timeout", "5", "--",
                                          try Locations.python(), probe, events])
        XCTAssertTrue(master.waitForLog("Listening on 127.0.0.1:\(port)", timeout: 20), "systemd-socket-activate did not listen")
        _ = httpGetOnce(port: port, timeout: 10)  // the first connection starts the master
        guard let started = systemd.next(timeout: 30), notifyFields(started)["READY"] == "1" else {
            return XCTFail("no READY=1 at the start\n\(master.logExcerpt())")
        }
        let reload = try baton(["reload", "--master"])
        XCTAssertEqual(reload.exitCode, 0, "\(reload)\n\(master.logExcerpt())")
        XCTAssertTrue(reload.output.contains("execution 1"), "\(reload)")
        guard let reloading = systemd.next(timeout: 30) else { return XCTFail("no RELOADING=1 after the re-execution request") }
        XCTAssertEqual(notifyFields(reloading)["RELOADING"], "1", reloading.debugDescription)
        XCTAssertTrue(notifyFields(reloading)["STATUS"]?.contains("re-executing the master") ?? false, reloading)
        guard let ready = systemd.next(timeout: 30) else { return XCTFail("no READY=1 after the re-execution") }
        XCTAssertEqual(notifyFields(ready)["READY"], "1", ready)
        XCTAssertTrue(master.waitForLog("master re-executed in place: pid \(master.pid)", timeout: 10), master.logExcerpt())
        XCTAssertTrue(poll(timeout: 10) { ((try? String(contentsOfFile: events, encoding: .utf8)) ?? "").components(separatedBy: "started").count == 3 },
                      "a second worker did not start")
        if case .failure(let error) = httpGetOnce(port: port, timeout: 10) { XCTFail("the adopted socket stopped serving: \(error)") }
        let log = (try? String(contentsOfFile: events, encoding: .utf8)) ?? ""
        XCTAssertFalse(log.contains("parent-death"), "a worker got its parent-death signal at the exec:\n\(log)")
        XCTAssertTrue(log.contains("protocol=\(WorkerEnvironment.currentProtocol)"), log)
        master.signal(SIGTERM)
        XCTAssertEqual(master.waitForExit(timeout: 30), .exited(0), master.logExcerpt())
    }

    private func socketActivateTool() throws -> String {
        guard let tool = Locations.find("systemd-socket-activate", preferring: ["/usr/bin/systemd-socket-activate", "/lib/systemd/systemd-socket-activate"]) else {
            throw skipOrFail("systemd-socket-activate is not installed (Debian package 'systemd'; .ci/run installs it)")
        }
        return tool
    }

    private func checkAdoptsAndUpgrades(_ master: TestProcess, port: UInt16, name: String,
                                        file: StaticString = #filePath, line: UInt = #line) throws {
        // systemd-socket-activate listens first and execs the command at the first connection,
        // in the same process: the master's pid is the one the test started.
        XCTAssertTrue(master.waitForLog("Listening on 127.0.0.1:\(port)", timeout: 20), "systemd-socket-activate did not listen", file: file, line: line)
        let first = try waitUntilServing(port: port, master: master, file: file, line: line)
        XCTAssertTrue(master.waitForLog("adopted 1 listener(s) from socket activation: \(name)", timeout: 10),
                      "the master did not log the adoption", file: file, line: line)
        XCTAssertEqual(master.logCount("listening on"), 0, "the master bound a socket of its own", file: file, line: line)
        let reload = try baton(["reload"])
        XCTAssertEqual(reload.exitCode, 0, "\(reload)", file: file, line: line)
        let second = waitForNewPid(port: port, master: master, old: first.pid!)
        XCTAssertNotNil(second, "no new worker after the reload", file: file, line: line)
        master.signal(SIGHUP)
        if let second {
            XCTAssertNotNil(waitForNewPid(port: port, master: master, old: second), "no new worker after SIGHUP", file: file, line: line)
        }
        master.signal(SIGTERM)
        XCTAssertEqual(master.waitForExit(timeout: 30), .exited(0), file: file, line: line)
        // Every generation drained by itself (an idle worker needs well under a second).
        XCTAssertEqual(master.logCount("did not drain"), 0, "a worker had to be killed", file: file, line: line)
        XCTAssertTrue(poll(timeout: 5) { Proc.all().filter { $0.pgrp == master.pid && $0.state != "Z" }.isEmpty },
                      "processes left in the master's group", file: file, line: line)
    }
}
#endif
