import XCTest
@testable import Baton

/// The canary phase of the master's state machine, event by event, without a process.
final class CanaryStateMachineTests: MasterStateMachineTestCase {
    /// What a Baton NIO worker of this release says when ready.
    let ready = NotifyMessage([("READY", "1"), ("BATON_HANDOFF", "1"), ("BATON_CANARY", "1")])
    let settings = CanarySettings(percent: 10, window: .seconds(60))

    /// Generation 1 (pid 101) serving, able to pass a share of its traffic.
    func serving(ready message: NotifyMessage? = nil) -> Harness {
        startServing(ready: message ?? ready)
    }

    /// Asks for a canary of `v2` (generation `number`, pid 100 + `number`) and makes it ready.
    func startCanary(_ h: inout Harness, number: Int = 2, reply: Machine.ReplyToken? = .init(id: 1)) -> [Action] {
        let triggered = h.send(.canaryTrigger(reason: "baton reload --canary", request: CanaryRequest(percent: 10, seconds: 60), reply: reply,
                                              masterBinaryChanged: false))
        XCTAssertTrue(triggered.contains(.launch))
        XCTAssertEqual(h.send(.launched(v2)).last, .spawnCanary(generation: number, plan: v2))
        h.send(.spawned(generation: number, pid: Int32(100 + number), listeners: [http], hasInbox: true))
        h.advance(.milliseconds(50))
        return h.send(.notified(pid: Int32(100 + number), ready))
    }

    func stats(_ requests: Int, errors: Int = 0, microseconds: Int64 = 1000) -> NotifyMessage {
        var stats = RequestStats()
        for index in 0..<requests { stats.record(status: index < errors ? 500 : 200, microseconds: microseconds) }
        return NotifyMessage([("BATON_STATS", stats.wire)])
    }

    func testTheCanaryTakesItsShareThenIsPromotedAfterAGoodWindow() {
        var h = serving()
        h.send(.notified(pid: 101, stats(5000)))  // counted before the window: not judged
        let started = startCanary(&h)
        XCTAssertEqual(h.machine.generations.map(\.state), [.serving, .canary])
        XCTAssertTrue(started.contains(.sendShare(generation: 1, percent: 10, to: 2)))
        XCTAssertTrue(started.contains(.startTimer(.canaryWindow(generation: 2), after: .seconds(60))))
        XCTAssertFalse(started.contains { if case .sendDrainOrders = $0 { return true } else { return false } }, "nobody drains yet")
        XCTAssertFalse(started.contains { if case .reply = $0 { return true } else { return false } }, "the answer waits for the verdict")
        XCTAssertEqual(h.machine.currentPlan, v1, "the serving release is still the current one")
        XCTAssertTrue(h.machine.isBusy)
        XCTAssertNotNil(h.machine.canaryStatus)

        h.advance(.seconds(30))
        h.send(.notified(pid: 101, stats(5000 + 9000)))
        h.send(.notified(pid: 102, stats(1000)))
        h.advance(.seconds(30))
        let judged = h.send(.timeout(.canaryWindow(generation: 2)))
        XCTAssertEqual(judged.firstIndex(of: .sendAccept(generation: 2)).map { $0 < judged.firstIndex(of: .signal(pid: 101, .terminate))! }, true,
                       "the canary accepts before the serving generation drains")
        XCTAssertTrue(judged.contains(.sendDrainOrders(generation: 1, shared: [0], handoffTo: 2, deadline: .seconds(29))))
        XCTAssertTrue(judged.contains(.count(.canary("promoted"))))
        XCTAssertEqual(h.machine.generations.map(\.state), [.draining, .serving])
        XCTAssertEqual(h.machine.currentPlan, v2)
        XCTAssertEqual(h.machine.previousPlan, v1)
        guard case .canary(let verdict, .succeeded(2, 102, "2", _, [1]))? = judged.replies.first?.1 else {
            return XCTFail("\(judged.replies)")
        }
        XCTAssertTrue(verdict.hasPrefix("promoted: passed: canary 1000 requests, 0.0% 5xx"), verdict)
        XCTAssertTrue(verdict.contains("serving release 9000 requests"), "only the window's counts: \(verdict)")
        XCTAssertFalse(h.machine.isBusy)
        XCTAssertEqual(h.machine.lastCanary, verdict)
    }

    func testErrorsRollTheCanaryBackBeforeItsWindowEnds() {
        var h = serving()
        _ = startCanary(&h)
        h.advance(.seconds(5))
        h.send(.notified(pid: 101, stats(2000)))
        XCTAssertEqual(h.send(.notified(pid: 102, stats(100, errors: 1))).filter { if case .sendShare = $0 { return true } else { return false } }, [],
                       "1% of 100 is no proof")
        let actions = h.send(.notified(pid: 102, stats(400, errors: 20)))
        XCTAssertTrue(actions.contains(.sendShare(generation: 1, percent: 0, to: nil)), "the serving generation stops sharing")
        XCTAssertTrue(actions.contains(.sendDrainOrders(generation: 2, shared: [0], handoffTo: 1, deadline: .seconds(29))),
                      "the canary hands its connections back")
        XCTAssertTrue(actions.contains(.signal(pid: 102, .terminate)))
        XCTAssertFalse(actions.contains(.closeInbox(generation: 1)), "the serving generation keeps its inbox")
        XCTAssertTrue(actions.contains(.count(.canary("rolled_back"))))
        XCTAssertEqual(h.machine.generations.map(\.state), [.serving, .draining])
        XCTAssertEqual(h.machine.currentPlan, v1)
        guard case .canary(let verdict, .failed(let reason))? = actions.replies.first?.1 else { return XCTFail("\(actions.replies)") }
        XCTAssertTrue(verdict.contains("5xx rate 5.0% against the serving release's 0.0%"), verdict)
        XCTAssertTrue(reason.hasPrefix("canary rolled back"), reason)
        XCTAssertEqual(h.send(.timeout(.canaryWindow(generation: 2))).filter { !$0.isLog }, [], "the window's timer comes too late")
    }

    func testASlowCanaryIsRolledBackOnLatency() {
        var h = serving()
        _ = startCanary(&h)
        h.send(.notified(pid: 101, stats(9000, microseconds: 2_000)))
        h.send(.notified(pid: 102, stats(1000, microseconds: 52_000)))
        h.advance(.seconds(60))
        let actions = h.send(.timeout(.canaryWindow(generation: 2)))
        guard case .canary(let verdict, .failed)? = actions.replies.first?.1 else { return XCTFail("\(actions.replies)") }
        XCTAssertTrue(verdict.contains("p99 latency"), verdict)
        XCTAssertEqual(h.machine.generations.map(\.state), [.serving, .draining])
    }

    func testTooFewRequestsIsInconclusiveAndRollsBack() {
        var h = serving()
        _ = startCanary(&h)
        h.send(.notified(pid: 102, stats(12)))
        h.advance(.seconds(60))
        let actions = h.send(.timeout(.canaryWindow(generation: 2)))
        guard case .canary(let verdict, .failed)? = actions.replies.first?.1 else { return XCTFail("\(actions.replies)") }
        XCTAssertTrue(verdict.contains("inconclusive: the canary answered 12 request(s), fewer than the 100 needed"), verdict)
    }

    func testACanaryIsRefusedBesideAWorkerThatCannotShare() {
        var h = serving(ready: NotifyMessage([("READY", "1"), ("BATON_HANDOFF", "1")]))
        h.send(.canaryTrigger(reason: "baton reload --canary", request: CanaryRequest(), reply: .init(id: 1), masterBinaryChanged: false))
        let actions = h.send(.launched(v2))
        XCTAssertFalse(actions.contains { if case .spawnCanary = $0 { return true } else { return false } })
        guard case .upgrade(.failed(let reason))? = actions.replies.first?.1 else { return XCTFail("\(actions.replies)") }
        XCTAssertTrue(reason.contains("canary refused: generation 1 (pid 101, version 1) cannot pass a share of its traffic"), reason)
        XCTAssertEqual(h.machine.generations.map(\.state), [.serving])
        XCTAssertFalse(h.machine.isBusy)
    }

    func testBadSettingsAreRefusedBeforeAnythingStarts() {
        var h = serving()
        h.send(.canaryTrigger(reason: "r", request: CanaryRequest(percent: 80), reply: .init(id: 1), masterBinaryChanged: false))
        guard case .upgrade(.failed(let reason))? = h.send(.launched(v2)).replies.first?.1 else { return XCTFail() }
        XCTAssertTrue(reason.contains("percent must be 1…50 (got 80)"), reason)
    }

    func testWatchConfCanaryAppliesToAPlainTriggerButNotToRestarts() {
        var h = serving()
        var planned = v2
        planned.canary = CanarySettings(percent: 5, window: .seconds(30))
        h.send(.trigger(reason: "watch.conf changed", reply: nil, masterBinaryChanged: false))
        XCTAssertEqual(h.send(.launched(planned)).last, .spawnCanary(generation: 2, plan: v2), "the plan is kept without its canary")
        h.send(.spawned(generation: 2, pid: 102, listeners: [http], hasInbox: true))
        XCTAssertTrue(h.send(.notified(pid: 102, ready)).contains(.sendShare(generation: 1, percent: 5, to: 2)))
    }

    func testAChangeOfAddressIsNoCanary() {
        var h = Harness()
        var first = v1
        first.listen = [.tcp(host: "0.0.0.0", port: 8080)]
        h.send(.start)
        h.send(.launched(first))
        h.send(.spawned(generation: 1, pid: 101, listeners: [http], hasInbox: true))
        h.send(.notified(pid: 101, ready))
        var moved = v2
        moved.listen = [.tcp(host: "0.0.0.0", port: 9090)]
        h.send(.canaryTrigger(reason: "r", request: CanaryRequest(), reply: .init(id: 1), masterBinaryChanged: false))
        guard case .upgrade(.failed(let reason))? = h.send(.launched(moved)).replies.first?.1 else { return XCTFail() }
        XCTAssertTrue(reason.contains("the release listens elsewhere (0.0.0.0:9090, now 0.0.0.0:8080)"), reason)
        var same = v2
        same.listen = first.listen
        h.send(.canaryTrigger(reason: "r", request: CanaryRequest(), reply: nil, masterBinaryChanged: false))
        XCTAssertEqual(h.send(.launched(same)).last, .spawnCanary(generation: 2, plan: same), "the same address: a canary")
    }

    func testAWorkerThatDidNotStartAsACanaryIsDrained() {
        var h = serving()
        h.send(.canaryTrigger(reason: "r", request: CanaryRequest(), reply: .init(id: 1), masterBinaryChanged: false))
        h.send(.launched(v2))
        h.send(.spawned(generation: 2, pid: 102, listeners: [http], hasInbox: true))
        let actions = h.send(.notified(pid: 102, NotifyMessage([("READY", "1")])))
        XCTAssertTrue(actions.contains(.signal(pid: 102, .terminate)))
        XCTAssertFalse(actions.contains(.signal(pid: 101, .terminate)))
        guard case .upgrade(.failed(let reason))? = actions.replies.first?.1 else { return XCTFail("\(actions.replies)") }
        XCTAssertTrue(reason.contains("did not start as a canary"), reason)
        XCTAssertEqual(h.machine.generations.map(\.state), [.serving, .draining])
    }

    func testACanaryThatDiesIsRolledBack() {
        var h = serving()
        _ = startCanary(&h)
        let actions = h.send(.exited(pid: 102, .signaled(9)))
        XCTAssertTrue(actions.contains(.sendShare(generation: 1, percent: 0, to: nil)))
        guard case .canary(let verdict, .failed)? = actions.replies.first?.1 else { return XCTFail("\(actions.replies)") }
        XCTAssertTrue(verdict.contains("exited during its window"), verdict)
        XCTAssertEqual(h.machine.generations.map(\.state), [.serving])
        XCTAssertFalse(h.machine.isBusy)
    }

    func testWhenTheServingGenerationDiesTheCanaryTakesOver() {
        var h = serving()
        _ = startCanary(&h)
        let actions = h.send(.exited(pid: 101, .signaled(9)))
        XCTAssertTrue(actions.contains(.sendAccept(generation: 2)))
        XCTAssertEqual(h.machine.generations.map(\.state), [.serving])
        XCTAssertEqual(h.machine.currentPlan, v2)
        guard case .canary(_, .succeeded)? = actions.replies.first?.1 else { return XCTFail("\(actions.replies)") }
    }

    func testPromoteAndAbortByHand() {
        var h = serving()
        XCTAssertEqual(h.send(.endCanary(promote: true, reply: .init(id: 9))).replies.first?.1, .upgrade(.failed(reason: "no canary is running")))
        _ = startCanary(&h)
        h.advance(.seconds(3))
        let aborted = h.send(.endCanary(promote: false, reply: .init(id: 2)))
        XCTAssertEqual(aborted.replies.map(\.0), [.init(id: 1), .init(id: 2)], "the reload and the abort both hear the outcome")
        guard case .canary(let verdict, .failed)? = aborted.replies.first?.1 else { return XCTFail() }
        XCTAssertTrue(verdict.hasPrefix("rolled back: by hand (baton abort) after 3 s"), verdict)

        h.send(.exited(pid: 102, .exited(0)))
        _ = startCanary(&h, number: 3, reply: nil)
        let promoted = h.send(.endCanary(promote: true, reply: .init(id: 3)))
        XCTAssertTrue(promoted.contains(.sendAccept(generation: 3)))
        XCTAssertEqual(promoted.replies.map(\.0), [.init(id: 3)])
        guard case .canary(let verdict, .succeeded)? = promoted.replies.last?.1 else { return XCTFail() }
        XCTAssertTrue(verdict.hasPrefix("promoted: by hand (baton promote)"), verdict)
    }

    func testTriggersDuringTheWindowFollowTheVerdictAndReexecIsRefused() {
        var h = serving()
        _ = startCanary(&h)
        let queued = h.send(.trigger(reason: "SIGHUP", reply: .init(id: 5), masterBinaryChanged: false))
        XCTAssertTrue(queued.logs.contains { $0.contains("during a canary window: it will follow the verdict") })
        guard case .reexec(.refused(let why))? = h.send(.reexecRequested(reason: "SIGUSR2", reply: .init(id: 6))).replies.first?.1 else { return XCTFail() }
        XCTAssertTrue(why.contains("a canary upgrade is running"), why)
        let ended = h.send(.endCanary(promote: false, reply: nil))
        XCTAssertTrue(ended.contains(.launch), "the follow-up upgrade starts after the verdict")
    }

    func testShutdownDuringTheWindowAnswersAndDrainsBoth() {
        var h = serving()
        _ = startCanary(&h)
        let actions = h.send(.shutdown)
        XCTAssertEqual(actions.replies.first?.1, .upgrade(.failed(reason: "the master is shutting down")))
        XCTAssertTrue(actions.contains(.signal(pid: 101, .terminate)))
        XCTAssertTrue(actions.contains(.signal(pid: 102, .terminate)))
    }
}
