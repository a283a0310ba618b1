import Logging
import XCTest
@testable import Baton

/// The master's decisions, event by event, without a process: each test drives a
/// ``MasterStateMachine`` through one order of events and checks the actions it returns.
final class MasterStateMachineTests: MasterStateMachineTestCase {
    let ready = NotifyMessage([("READY", "1"), ("BATON_HANDOFF", "1")])

    // MARK: Helpers

    func token(_ id: Int) -> Machine.ReplyToken { .init(id: id) }

    /// Starts generation 1 of `v1` (pid 101) and makes it ready.
    func serving(_ settings: Machine.Settings = .init()) -> Harness {
        var h = Harness(settings)
        XCTAssertEqual(h.send(.start), [.absorbPendingConfigChanges(reason: "start"), .launch])
        XCTAssertEqual(h.send(.launched(v1)).last, .spawn(generation: 1, plan: v1))
        h.send(.spawned(generation: 1, pid: 101, listeners: [http], hasInbox: true))
        h.advance(.milliseconds(150))
        h.send(.notified(pid: 101, ready))
        XCTAssertEqual(h.machine.generations.map(\.state), [.serving])
        XCTAssertEqual(h.machine.phase, .idle)
        return h
    }

    /// Upgrades a serving harness to `plan` as generation `number` (pid 100 + number), ready.
    func upgrade(_ h: inout Harness, to plan: LaunchPlan, number: Int, reply: Machine.ReplyToken? = nil, reason: String = "SIGHUP") {
        h.send(.trigger(reason: reason, reply: reply, masterBinaryChanged: false))
        h.send(.launched(plan))
        h.send(.spawned(generation: number, pid: Int32(100 + number), listeners: [http], hasInbox: true))
        h.advance(.milliseconds(100))
        h.send(.notified(pid: Int32(100 + number), ready))
    }

    // MARK: Starting

    func testFirstStartLaunchesSpawnsAndTurnsServingOnReady() {
        var h = Harness()
        XCTAssertEqual(h.send(.start), [.absorbPendingConfigChanges(reason: "start"), .launch], "no RELOADING=1 for the first start")
        XCTAssertEqual(h.send(.launched(v1)), [.spawn(generation: 1, plan: v1)], "nothing to compare the first plan with")
        let spawned = h.send(.spawned(generation: 1, pid: 101, listeners: [http], hasInbox: true))
        XCTAssertTrue(spawned.contains(.startTimer(.ready(generation: 1), after: .seconds(30))))
        XCTAssertTrue(spawned.logs.contains { $0.contains("generation 1 (pid 101, version 1) starting (start)") })
        XCTAssertTrue(h.machine.isBusy)
        h.advance(.milliseconds(166))
        let actions = h.send(.notified(pid: 101, ready))
        XCTAssertEqual(h.machine.currentPlan, v1)
        XCTAssertNil(h.machine.previousPlan)
        XCTAssertFalse(actions.contains { if case .sendDrainOrders = $0 { return true } else { return false } }, "nothing to drain")
        XCTAssertFalse(actions.contains(.closeInbox(generation: 1)), "the master keeps the inbox of a serving generation")
        XCTAssertTrue(actions.contains(.count(.ready(after: .milliseconds(166)))))
        XCTAssertFalse(actions.contains(.count(.upgrade(succeeded: true))), "the first start is not an upgrade")
        XCTAssertTrue(actions.contains(.tellSystemd(.ready("generation 1 (pid 101, version 1) ready in 166 ms"))))
        XCTAssertTrue(actions.contains(.releasesInUse([v1.executable])))
        XCTAssertEqual(h.machine.lastUpgrade, .succeeded(generation: 1, pid: 101, version: "1", readyAfter: .milliseconds(166), draining: []))
        XCTAssertFalse(h.machine.isBusy)
    }

    func testFirstStartThatCannotLaunchEndsTheMaster() {
        var h = Harness()
        h.send(.start)
        let actions = h.send(.launchFailed("watch.conf: missing key BinName"))
        XCTAssertTrue(h.machine.firstGenerationFailed)
        XCTAssertFalse(actions.contains { if case .startTimer(.restart, _) = $0 { return true } else { return false } },
                       "no release to restart")
        XCTAssertFalse(actions.contains { if case .tellSystemd(.ready) = $0 { return true } else { return false } })
    }

    func testFirstGenerationThatExitsAtStartEndsTheMaster() {
        var h = Harness()
        h.send(.start)
        h.send(.launched(v1))
        h.send(.spawned(generation: 1, pid: 101, listeners: [http], hasInbox: true))
        XCTAssertFalse(h.machine.firstGenerationFailed, "still starting")
        let actions = h.send(.exited(pid: 101, .exited(3)))
        XCTAssertTrue(actions.contains(.forget(generation: 1)))
        XCTAssertTrue(actions.logs.contains { $0.contains("exited at start with exit status 3; no generation is serving") })
        XCTAssertTrue(h.machine.firstGenerationFailed)
    }

    func testUptimeReadinessMakesAGenerationServingWithoutAMessage() {
        var h = Harness(.init(readyAfterUptime: .seconds(2)))
        h.send(.start)
        h.send(.launched(v1))
        let spawned = h.send(.spawned(generation: 1, pid: 101, listeners: [http], hasInbox: true))
        XCTAssertTrue(spawned.contains(.startTimer(.uptime(generation: 1), after: .seconds(2))))
        h.advance(.seconds(2))
        h.send(.timeout(.uptime(generation: 1)))
        XCTAssertEqual(h.machine.generations.first?.state, .serving)
        XCTAssertEqual(h.machine.generations.first?.status, "up for 2 s")
        XCTAssertEqual(h.send(.timeout(.uptime(generation: 1))), [], "a second timer changes nothing")
    }

    func testNotifyMessagesFromStrangersAreIgnoredAndStatusIsKept() {
        var h = serving()
        XCTAssertEqual(h.send(.notified(pid: 999, ready)).logs.count, 1)
        XCTAssertEqual(h.machine.generations.map(\.pid), [101])
        h.send(.notified(pid: 101, NotifyMessage([("STATUS", "42 connections")])))
        XCTAssertEqual(h.machine.generations.first?.status, "42 connections")
        XCTAssertEqual(h.send(.notified(pid: 101, ready)).filter { !$0.isLog }, [], "READY=1 again from a serving generation")
    }

    // MARK: Upgrades

    func testUpgradeDrainsTheOldGenerationAndHandsItsConnectionsToTheNew() {
        var h = serving()
        let triggered = h.send(.trigger(reason: "SIGHUP", reply: token(1), masterBinaryChanged: false))
        XCTAssertEqual(triggered, [.tellSystemd(.reloading("upgrading (SIGHUP)")), .absorbPendingConfigChanges(reason: "SIGHUP"), .launch])
        let launched = h.send(.launched(v2))
        XCTAssertTrue(launched.logs.contains { $0.contains("upgrade (SIGHUP): version 1 → 2; executable") })
        XCTAssertEqual(launched.last, .spawn(generation: 2, plan: v2))
        h.send(.spawned(generation: 2, pid: 102, listeners: [http], hasInbox: true))
        h.advance(.milliseconds(45))
        let actions = h.send(.notified(pid: 102, ready))
        let drain = Action.sendDrainOrders(generation: 1, shared: [0], handoffTo: 2, deadline: .seconds(29))
        XCTAssertEqual(actions.firstIndex(of: drain).map { $0 + 1 }, actions.firstIndex(of: .signal(pid: 101, .terminate)),
                       "orders first, then SIGTERM")
        XCTAssertLessThan(actions.firstIndex(of: drain)!, actions.firstIndex(of: .closeInbox(generation: 1))!,
                          "a draining generation's inbox is closed in the master once it has its orders")
        XCTAssertFalse(actions.contains(.closeInbox(generation: 2)), "kept while generation 2 serves")
        XCTAssertTrue(actions.contains(.startTimer(.drain(generation: 1), after: .seconds(30))))
        let outcome = UpgradeOutcome.succeeded(generation: 2, pid: 102, version: "2", readyAfter: .milliseconds(45), draining: [1])
        XCTAssertTrue(actions.contains(.reply(token(1), .upgrade(outcome))))
        XCTAssertTrue(actions.contains(.count(.upgrade(succeeded: true))))
        XCTAssertTrue(actions.contains(.makeListenersCurrent([http])))
        XCTAssertTrue(actions.contains(.releasesInUse([v1.executable, v2.executable])))
        XCTAssertEqual(h.machine.currentPlan, v2)
        XCTAssertEqual(h.machine.previousPlan, v1)
        XCTAssertEqual(h.machine.generations.map(\.state), [.draining, .serving])

        h.advance(.milliseconds(300))
        let drained = h.send(.exited(pid: 101, .exited(0)))
        XCTAssertTrue(drained.contains(.forget(generation: 1)))
        XCTAssertTrue(drained.contains(.count(.drained(after: .milliseconds(300)))))
        XCTAssertTrue(drained.contains(.closeUnusedListeners(inUse: [http])))
        XCTAssertEqual(h.machine.generations.map(\.number), [2])
    }

    func testAGenerationStillHandingOverIsPointedAtTheNewestGeneration() {
        var h = serving(.init(maxDrainingGenerations: 3))  // the bound is another test's
        upgrade(&h, to: v2, number: 2)
        XCTAssertEqual(h.machine.generations.map(\.state), [.draining, .serving], "generation 1 still hands over")
        h.advance(.seconds(2))
        h.send(.trigger(reason: "SIGHUP", reply: nil, masterBinaryChanged: false))
        h.send(.launched(v3))
        h.send(.spawned(generation: 3, pid: 103, listeners: [http], hasInbox: true))
        let actions = h.send(.notified(pid: 103, ready))
        XCTAssertTrue(actions.contains(.sendDrainOrders(generation: 2, shared: [0], handoffTo: 3, deadline: .seconds(29))))
        let retarget = Action.sendDrainOrders(generation: 1, shared: [0], handoffTo: 3, deadline: .seconds(27))
        XCTAssertTrue(actions.contains(retarget), "\(actions)")
        XCTAssertFalse(actions.contains(.closeInbox(generation: 3)), "kept while generation 3 serves")
        XCTAssertTrue(actions.contains(.closeInbox(generation: 2)))
        XCTAssertFalse(actions.contains(.signal(pid: 101, .terminate)), "no second SIGTERM")

        // A new generation that takes no connections changes nothing for the drainers.
        h.send(.trigger(reason: "SIGHUP", reply: nil, masterBinaryChanged: false))
        h.send(.launched(v3))
        h.send(.spawned(generation: 4, pid: 104, listeners: [http], hasInbox: true))
        let plain = h.send(.notified(pid: 104, NotifyMessage([("READY", "1")])))
        XCTAssertEqual(plain.filter { if case .sendDrainOrders = $0 { return true } else { return false } },
                       [.sendDrainOrders(generation: 3, shared: [0], handoffTo: nil, deadline: .seconds(29))])
    }

    /// WebSockets keep a draining generation for its whole close window: an upgrade that would
    /// make more than `maxDrainingGenerations` drain hurries the oldest as its generation
    /// starts, and the new generation, ready, takes over only once the hurried one has exited.
    func testAnUpgradeBeyondTheBoundHurriesTheOldestAndTakesOverWhenItHasExited() {
        var h = serving()
        upgrade(&h, to: v2, number: 2)
        upgrade(&h, to: v3, number: 3)
        XCTAssertEqual(h.machine.generations.map(\.state), [.draining, .draining, .serving])
        XCTAssertFalse(h.all.contains { if case .sendHurry = $0 { return true } else { return false } }, "two draining: within the bound")

        h.send(.trigger(reason: "SIGHUP", reply: nil, masterBinaryChanged: false))
        h.send(.launched(v2))
        let spawned = h.send(.spawned(generation: 4, pid: 104, listeners: [http], hasInbox: true))
        XCTAssertEqual(spawned.filter(isHurry), [.sendHurry(generation: 1)], "hurried while generation 4 starts")
        XCTAssertTrue(spawned.logs.contains { $0.contains("generation 1 (pid 101, version 1) hurried: 2 generations draining and 1 to drain at the next take-over, at most 2 may") }, "\(spawned.logs)")

        // Ready while generation 1 still drains: generation 3 goes on serving, 4 waits.
        h.advance(.milliseconds(200))
        let ready4 = h.send(.notified(pid: 104, ready))
        XCTAssertFalse(ready4.contains { if case .sendDrainOrders = $0 { return true } else { return false } }, "\(ready4)")
        XCTAssertFalse(ready4.contains(.makeListenersCurrent([http])))
        XCTAssertTrue(ready4.contains(.startTimer(.room(generation: 4), after: .seconds(5))))
        XCTAssertTrue(ready4.logs.contains { $0.contains("generation 4 (pid 104, version 2) is ready (after 200 ms); it takes over once generation 1 has exited") }, "\(ready4.logs)")
        XCTAssertEqual(h.machine.generations.map(\.state), [.draining, .draining, .serving, .starting])
        XCTAssertTrue(h.machine.isBusy)
        XCTAssertTrue(h.send(.notified(pid: 104, ready)).isEmpty, "a second READY=1 changes nothing")
        XCTAssertTrue(h.send(.timeout(.ready(generation: 4))).isEmpty, "a ready generation is not killed for want of readiness")

        // Generation 1 exits: room for generation 3 to drain, and 4 takes over.
        h.advance(.milliseconds(800))
        let exited = h.send(.exited(pid: 101, .exited(0)))
        XCTAssertTrue(exited.contains(.sendDrainOrders(generation: 3, shared: [0], handoffTo: 4, deadline: .seconds(29))), "\(exited)")
        XCTAssertEqual(h.machine.generations.map(\.state), [.draining, .draining, .serving])
        XCTAssertEqual(h.machine.lastUpgrade, .succeeded(generation: 4, pid: 104, version: "2", readyAfter: .milliseconds(200), draining: [3]))
        XCTAssertFalse(exited.contains(where: isHurry), "two draining again: within the bound")
        XCTAssertTrue(h.send(.timeout(.room(generation: 4))).isEmpty, "the wait is over already")

        // A hurried generation that does not exit: after `roomWait` the new one takes over anyway.
        h.send(.trigger(reason: "SIGHUP", reply: nil, masterBinaryChanged: false))
        h.send(.launched(v3))
        XCTAssertEqual(h.send(.spawned(generation: 5, pid: 105, listeners: [http], hasInbox: true)).filter(isHurry), [.sendHurry(generation: 2)])
        h.send(.notified(pid: 105, ready))
        XCTAssertEqual(h.machine.generations.last?.state, .starting)
        h.advance(.seconds(5))
        let overdue = h.send(.timeout(.room(generation: 5)))
        XCTAssertTrue(overdue.logs.contains { $0.contains("generation 5 (pid 105, version 3) takes over although 2 generations are still draining after 5 s (at most 2 should)") }, "\(overdue.logs)")
        XCTAssertEqual(h.machine.generations.map(\.state), [.draining, .draining, .draining, .serving])
        XCTAssertFalse(overdue.contains(where: isHurry), "generation 2, the oldest, is hurried already")
    }

    /// With a bound of one draining generation: generation 1 draining, 2 serving, and 3 (version
    /// 3) ready but waiting for room, its upgrade answered to `reply`.
    func waitingForRoom(reply: Machine.ReplyToken?) -> Harness {
        var h = serving(.init(maxDrainingGenerations: 1))
        upgrade(&h, to: v2, number: 2)
        h.send(.trigger(reason: "SIGHUP", reply: reply, masterBinaryChanged: false))
        h.send(.launched(v3))
        h.send(.spawned(generation: 3, pid: 103, listeners: [http], hasInbox: true))
        h.send(.notified(pid: 103, ready))
        XCTAssertEqual(h.machine.generations.map(\.state), [.draining, .serving, .starting])
        return h
    }

    /// A generation that waits for room and dies fails its upgrade; the serving one goes on.
    func testAGenerationThatDiesWhileItWaitsForRoomFailsItsUpgrade() {
        var h = waitingForRoom(reply: token(7))
        let died = h.send(.exited(pid: 103, .signaled(9)))
        XCTAssertTrue(died.contains { if case .reply(token(7), .upgrade(.failed(let reason))) = $0 { return reason.contains("generation 3 (pid 103, version 3) exited while it waited, ready, to take over") } else { return false } }, "\(died)")
        XCTAssertEqual(h.machine.generations.map(\.state), [.draining, .serving])
        XCTAssertTrue(h.send(.exited(pid: 101, .exited(0))).filter { if case .sendDrainOrders = $0 { return true } else { return false } }.isEmpty,
                      "nobody waits any more: the exit changes nothing else")
    }

    /// The serving generation dies while its successor waits for room: the successor takes over
    /// at once (no moment without a generation accepting), the bound or not.
    func testAGenerationWaitingForRoomTakesOverAtOnceWhenTheServingOneDies() {
        var h = waitingForRoom(reply: token(8))
        let died = h.send(.exited(pid: 102, .signaled(9)))
        XCTAssertTrue(died.logs.contains { $0.contains("generation 2 (pid 102, version 2) exited unexpectedly with signal 9 (Killed); generation 3 (pid 103, version 3), ready and waiting to take over, takes over now") }, "\(died.logs)")
        XCTAssertTrue(died.contains(.makeListenersCurrent([http])))
        XCTAssertTrue(died.contains { if case .reply(token(8), .upgrade(.succeeded)) = $0 { return true } else { return false } }, "\(died)")
        XCTAssertEqual(h.machine.generations.map(\.state), [.draining, .serving])
        XCTAssertEqual(h.machine.currentPlan, v3)
    }

    /// A shutdown while a generation waits for room drains it with the others.
    func testShutdownDrainsAGenerationThatWaitsForRoom() {
        var h = waitingForRoom(reply: nil)
        h.send(.shutdown)
        XCTAssertEqual(h.machine.generations.map(\.state), [.draining, .draining, .draining])
        h.send(.exited(pid: 101, .exited(0)))
        XCTAssertEqual(h.machine.generations.map(\.state), [.draining, .draining], "no take-over during a shutdown")
    }

    private func isHurry(_ action: Action) -> Bool { if case .sendHurry = action { return true } else { return false } }

    func testNoHandOverToAWorkerThatDoesNotTakeConnections() {
        var h = serving()
        h.send(.trigger(reason: "SIGHUP", reply: nil, masterBinaryChanged: false))
        h.send(.launched(v2))
        h.send(.spawned(generation: 2, pid: 102, listeners: [http], hasInbox: true))
        let actions = h.send(.notified(pid: 102, NotifyMessage([("READY", "1")])))
        XCTAssertTrue(actions.contains(.sendDrainOrders(generation: 1, shared: [0], handoffTo: nil, deadline: .seconds(29))))
        XCTAssertTrue(actions.logs.contains { $0.contains("does not take connections over") })
    }

    func testAfterAPortChangeTheOldQueueBelongsToTheDrainerAlone() throws {
        var h = serving()
        let other = Listener(fd: 11, name: "127.0.0.1:9090")
        h.send(.trigger(reason: "SIGHUP", reply: nil, masterBinaryChanged: false))
        h.send(.launched(v2))
        h.send(.spawned(generation: 2, pid: 102, listeners: [other], hasInbox: true))
        let actions = h.send(.notified(pid: 102, ready))
        XCTAssertTrue(actions.contains(.sendDrainOrders(generation: 1, shared: [], handoffTo: 2, deadline: .seconds(29))),
                      "nobody else serves the old port: the drainer takes its queue")
        // The master (and its keeper) let go of the old port before the drainer takes its queue:
        // no connection may queue there after the last ones were taken.
        let current = try XCTUnwrap(actions.firstIndex(of: .makeListenersCurrent([other])))
        let close = try XCTUnwrap(actions.firstIndex(of: .closeUnusedListeners(inUse: [other])))
        let orders = try XCTUnwrap(actions.firstIndex(of: .sendDrainOrders(generation: 1, shared: [], handoffTo: 2, deadline: .seconds(29))))
        XCTAssertLessThan(current, close, "the new port is current, so the old one is closed")
        XCTAssertLessThan(close, orders, "closed in the master before the drainer is told to take its queue")
        XCTAssertLessThan(close, try XCTUnwrap(actions.firstIndex(of: .signal(pid: 101, .terminate))))
    }

    func testAnUpgradeOnTheSamePortClosesNothingBeforeTheDrain() {
        var h = serving()
        h.send(.trigger(reason: "SIGHUP", reply: nil, masterBinaryChanged: false))
        h.send(.launched(v2))
        h.send(.spawned(generation: 2, pid: 102, listeners: [http], hasInbox: true))
        let actions = h.send(.notified(pid: 102, ready))
        let orders = actions.firstIndex(of: .sendDrainOrders(generation: 1, shared: [0], handoffTo: 2, deadline: .seconds(29)))
        XCTAssertNotNil(orders)
        XCTAssertFalse(actions.prefix(upTo: orders ?? 0).contains { if case .closeUnusedListeners = $0 { true } else { false } },
                       "the socket is shared: nothing to let go of first")
    }

    func testSocketActivatedListenersAreAlwaysShared() {
        var h = serving(.init(listenersFromSystemd: true))
        let actions = h.send(.shutdown)
        XCTAssertTrue(actions.contains(.sendDrainOrders(generation: 1, shared: [0], handoffTo: nil, deadline: .seconds(29))),
                      "systemd keeps the socket: never the drainer's alone")
        XCTAssertFalse(actions.contains(.closeListeners), "systemd's sockets queue for the next start")
    }

    func testTriggersDuringAnUpgradeCoalesceIntoOneFollowUp() {
        var h = serving()
        h.send(.trigger(reason: "SIGHUP", reply: token(1), masterBinaryChanged: false))
        // One trigger while the release is staged, two while generation 2 starts.
        let queued = h.send(.trigger(reason: "watch.conf changed", reply: nil, masterBinaryChanged: false))
        XCTAssertEqual(queued.logs, ["upgrade requested (watch.conf changed) while one is running: it will follow"])
        h.send(.launched(v2))
        h.send(.spawned(generation: 2, pid: 102, listeners: [http], hasInbox: true))
        h.send(.trigger(reason: "baton reload", reply: token(2), masterBinaryChanged: false))
        h.send(.trigger(reason: "baton reload", reply: token(3), masterBinaryChanged: false))
        let actions = h.send(.notified(pid: 102, ready))
        XCTAssertEqual(actions.replies.map(\.0), [token(1)], "only the first trigger's waiter hears of generation 2")
        XCTAssertEqual(actions.filter { $0 == .launch }.count, 1, "one follow-up upgrade")
        XCTAssertTrue(actions.contains(.absorbPendingConfigChanges(reason: "follow-up of watch.conf changed, baton reload (×2)")))
        XCTAssertTrue(h.machine.isBusy)
        h.send(.launched(v3))
        h.send(.spawned(generation: 3, pid: 103, listeners: [http], hasInbox: true))
        let followUp = h.send(.notified(pid: 103, ready))
        XCTAssertEqual(followUp.replies.map(\.0), [token(2), token(3)])
        XCTAssertEqual(followUp.filter { $0 == .launch }.count, 0, "nothing more follows")
        XCTAssertEqual(h.machine.generations.map(\.state), [.draining, .draining, .serving])
    }

    func testAStormOfTriggersIsOneFollowUpAndEveryWaiterHearsOnce() {
        var h = serving()
        h.send(.trigger(reason: "SIGHUP", reply: nil, masterBinaryChanged: false))
        for id in 1...100 { h.send(.trigger(reason: id.isMultiple(of: 2) ? "SIGHUP" : "baton reload", reply: token(id), masterBinaryChanged: false)) }
        h.send(.launched(v2))
        h.send(.spawned(generation: 2, pid: 102, listeners: [http], hasInbox: true))
        h.send(.notified(pid: 102, ready))
        h.send(.launched(v3))
        h.send(.spawned(generation: 3, pid: 103, listeners: [http], hasInbox: true))
        h.send(.notified(pid: 103, ready))
        XCTAssertEqual(h.all.filter { $0 == .launch }.count, 3, "start, the upgrade, one follow-up")
        XCTAssertEqual(Set(h.all.replies.map(\.0)), Set((1...100).map(token)))
        XCTAssertEqual(h.all.replies.count, 100, "each waiter is answered once")
        XCTAssertTrue(h.all.contains(.absorbPendingConfigChanges(reason: "follow-up of baton reload (×50), SIGHUP (×50)")))
        XCTAssertEqual(h.machine.phase, .idle)
    }

    func testAnUpgradeAbsorbsTheWatchConfChangeItReadsBeforeLaunching() {
        var h = serving()
        let actions = h.send(.trigger(reason: "baton reload", reply: token(1), masterBinaryChanged: false))
        XCTAssertEqual(actions.firstIndex(of: .absorbPendingConfigChanges(reason: "baton reload")).map { $0 + 1 },
                       actions.firstIndex(of: .launch), "pending changes are absorbed just before the file is read")
    }

    func testABrokenReleaseIsTriedOnceWhileTheOldGenerationKeepsServing() {
        var h = serving()
        h.send(.trigger(reason: "watch.conf changed", reply: token(1), masterBinaryChanged: false))
        h.send(.launched(v2))
        h.send(.spawned(generation: 2, pid: 102, listeners: [http], hasInbox: true))
        let actions = h.send(.exited(pid: 102, .exited(3)))
        let reason = "generation 2 (pid 102, version 2) exited at start with exit status 3; generation 1 (pid 101, version 1) keeps serving"
        XCTAssertTrue(actions.contains(.reply(token(1), .upgrade(.failed(reason: reason)))))
        XCTAssertTrue(actions.contains(.count(.upgrade(succeeded: false))))
        XCTAssertTrue(actions.contains(.tellSystemd(.ready("upgrade failed: \(reason)"))))
        XCTAssertFalse(actions.contains { if case .spawn = $0 { return true } else { return false } }, "not tried again")
        XCTAssertFalse(actions.contains { if case .startTimer(.restart, _) = $0 { return true } else { return false } })
        XCTAssertFalse(actions.contains { if case .signal = $0 { return true } else { return false } }, "generation 1 untouched")
        XCTAssertEqual(h.machine.generations.map(\.state), [.serving])
        XCTAssertEqual(h.machine.currentPlan, v1)
        XCTAssertEqual(h.machine.phase, .idle)
    }

    func testALaunchOrSpawnFailureChangesNothing() {
        var h = serving()
        h.send(.trigger(reason: "SIGHUP", reply: token(1), masterBinaryChanged: false))
        let launch = h.send(.launchFailed("hello.watch.conf: BinName 'app' is world-writable"))
        XCTAssertTrue(launch.contains(.reply(token(1), .upgrade(.failed(reason: "hello.watch.conf: BinName 'app' is world-writable; generation 1 (pid 101, version 1) keeps serving")))))
        h.send(.trigger(reason: "SIGHUP", reply: token(2), masterBinaryChanged: false))
        h.send(.launched(v2))
        let spawn = h.send(.spawnFailed(generation: 2, reason: "execve: No such file or directory"))
        XCTAssertTrue(spawn.contains(.reply(token(2), .upgrade(.failed(reason: "generation 2 (version 2): execve: No such file or directory; generation 1 (pid 101, version 1) keeps serving")))))
        XCTAssertEqual(h.machine.generations.map(\.number), [1])
        XCTAssertEqual(h.machine.nextNumber, 2, "the number is used by the next generation that does start")
    }

    func testAGenerationNotReadyInTimeIsKilledAndReapedQuietly() {
        var h = serving()
        h.send(.trigger(reason: "SIGHUP", reply: token(1), masterBinaryChanged: false))
        h.send(.launched(v2))
        h.send(.spawned(generation: 2, pid: 102, listeners: [http], hasInbox: true))
        h.advance(.seconds(30))
        let actions = h.send(.timeout(.ready(generation: 2)))
        XCTAssertTrue(actions.contains(.signal(pid: 102, .kill)))
        XCTAssertTrue(actions.contains(.reply(token(1), .upgrade(.failed(reason: "generation 2 (pid 102, version 2) was not ready within 30 s; killed it; generation 1 (pid 101, version 1) keeps serving")))))
        XCTAssertEqual(h.machine.generations.map(\.state), [.serving, .abandoned])
        XCTAssertEqual(h.send(.notified(pid: 102, ready)).filter { !$0.isLog }, [], "too late: it was given up on")
        let reaped = h.send(.exited(pid: 102, .signaled(9)))
        XCTAssertEqual(reaped.filter { !$0.isLog }, [.forget(generation: 2), .closeUnusedListeners(inUse: [http])])
        XCTAssertEqual(h.send(.timeout(.ready(generation: 1))), [], "a ready timer of a serving generation does nothing")
    }

    func testADrainThatTakesTooLongEndsWithSIGKILL() {
        var h = serving()
        upgrade(&h, to: v2, number: 2)
        h.advance(.seconds(30))
        let actions = h.send(.timeout(.drain(generation: 1)))
        XCTAssertTrue(actions.contains(.signal(pid: 101, .kill)))
        XCTAssertTrue(actions.logs.contains { $0.contains("did not drain within 30 s") })
        h.send(.exited(pid: 101, .signaled(9)))
        XCTAssertEqual(h.send(.timeout(.drain(generation: 1))), [], "gone already")
    }

    // MARK: Crashes

    func testACrashInProbationRollsBack() {
        var h = serving()
        upgrade(&h, to: v2, number: 2)
        h.send(.exited(pid: 101, .exited(0)))
        h.advance(.seconds(1))
        let actions = h.send(.exited(pid: 102, .signaled(11)))
        XCTAssertTrue(actions.contains { if case .log(.critical, let text) = $0 { return text.hasPrefix("ROLLBACK: generation 2 (pid 102, version 2) died 1 s after taking over") } else { return false } })
        XCTAssertTrue(actions.contains(.count(.rollback)))
        XCTAssertEqual(actions.last, .spawn(generation: 3, plan: v1))
        XCTAssertEqual(h.machine.currentPlan, v1)
        XCTAssertNil(h.machine.previousPlan, "no rollback of the rollback")
        h.send(.spawned(generation: 3, pid: 103, listeners: [http], hasInbox: true))
        let back = h.send(.notified(pid: 103, ready))
        XCTAssertFalse(back.contains { if case .count(.upgrade) = $0 { return true } else { return false } }, "a rollback is not an upgrade")
        XCTAssertEqual(h.machine.lastUpgrade.map { if case .succeeded(let n, _, _, _, _) = $0 { return n } else { return 0 } }, 3)
    }

    func testACrashAfterProbationRestartsWithBackOff() {
        var h = serving()
        upgrade(&h, to: v2, number: 2)
        h.send(.exited(pid: 101, .exited(0)))
        h.advance(.seconds(11))
        let crash = h.send(.exited(pid: 102, .signaled(9)))
        XCTAssertTrue(crash.logs.contains("generation 2 (pid 102, version 2) exited unexpectedly with signal 9 (Killed)"))
        XCTAssertTrue(crash.contains(.startTimer(.restart, after: .milliseconds(100))))
        XCTAssertFalse(crash.contains { if case .spawn = $0 { return true } else { return false } })
        XCTAssertEqual(h.send(.timeout(.restart)), [.count(.restart), .spawn(generation: 3, plan: v2)], "its own release again")
        h.send(.spawned(generation: 3, pid: 103, listeners: [http], hasInbox: true))
        let again = h.send(.exited(pid: 103, .exited(1)))
        XCTAssertTrue(again.contains(.startTimer(.restart, after: .milliseconds(200))), "the back-off doubles")
        h.send(.timeout(.restart))
        h.send(.spawned(generation: 4, pid: 104, listeners: [http], hasInbox: true))
        h.send(.notified(pid: 104, ready))
        XCTAssertEqual(h.machine.consecutiveFailures, 0, "a ready generation resets the back-off")
    }

    func testARestartTimerDuringAnUpgradeLeavesItToTheUpgrade() {
        var h = serving()
        h.advance(.seconds(20))
        h.send(.exited(pid: 101, .signaled(9)))
        XCTAssertTrue(h.machine.restartScheduled)
        h.send(.trigger(reason: "SIGHUP", reply: nil, masterBinaryChanged: false))
        XCTAssertEqual(h.send(.timeout(.restart)), [], "an upgrade is already starting a generation")
        h.send(.launched(v2))
        h.send(.spawned(generation: 2, pid: 102, listeners: [http], hasInbox: true))
        h.send(.notified(pid: 102, ready))
        XCTAssertEqual(h.machine.generations.map(\.state), [.serving])
    }

    func testTheSameReleaseDyingIsRestartedNotRolledBack() {
        var h = serving()
        upgrade(&h, to: v1, number: 2)
        XCTAssertNil(h.machine.previousPlan, "the same release again is not a new release")
        h.send(.exited(pid: 101, .exited(0)))
        let actions = h.send(.exited(pid: 102, .signaled(11)))
        XCTAssertFalse(actions.contains(.count(.rollback)))
        XCTAssertTrue(actions.contains(.startTimer(.restart, after: .milliseconds(100))))
    }

    func testACrashOfTheOldGenerationDuringAnUpgradeWaitsForTheNewOne() {
        var h = serving()
        h.send(.trigger(reason: "SIGHUP", reply: nil, masterBinaryChanged: false))
        h.send(.launched(v2))
        h.send(.spawned(generation: 2, pid: 102, listeners: [http], hasInbox: true))
        h.advance(.seconds(20))
        let actions = h.send(.exited(pid: 101, .signaled(9)))
        XCTAssertFalse(actions.contains { if case .startTimer(.restart, _) = $0 { return true } else { return false } },
                       "generation 2 is starting")
        h.send(.notified(pid: 102, ready))
        XCTAssertEqual(h.machine.generations.map(\.state), [.serving])
    }

    // MARK: Re-executing the master

    func testReexecWithAReplyAnswersBeforeTheExec() {
        var h = serving()
        XCTAssertEqual(h.send(.reexecRequested(reason: "baton reload --master", reply: token(1))).last, .checkMasterImage)
        XCTAssertTrue(h.machine.isBusy)
        let checked = h.send(.reexecChecked(.passed("ok")))
        XCTAssertEqual(checked.filter { !$0.isLog }, [.reply(token(1), .reexec(.accepted("ok"))), .startTimer(.execNow, after: .seconds(2))])
        XCTAssertEqual(h.send(.execNow), [.tellSystemd(.reloading("re-executing the master: /srv/app/app")), .execMaster])
        XCTAssertEqual(h.send(.timeout(.execNow)), [.tellSystemd(.reloading("re-executing the master: /srv/app/app")), .execMaster],
                       "the timer execs when the answer was never delivered")
    }

    func testReexecWithoutAReplyExecsAtOnceAndAFailedExecKeepsThisImage() {
        var h = serving()
        h.send(.reexecRequested(reason: "SIGUSR2", reply: nil))
        XCTAssertEqual(h.send(.reexecChecked(.passed("ok"))).filter { !$0.isLog },
                       [.tellSystemd(.reloading("re-executing the master: /srv/app/app")), .execMaster])
        let failed = h.send(.execFailed("execve /srv/app/app: Exec format error"))
        XCTAssertTrue(failed.contains(.count(.reexec("failed"))))
        XCTAssertTrue(failed.contains(.tellSystemd(.ready("master re-execution failed: execve /srv/app/app: Exec format error"))))
        XCTAssertTrue(failed.logs.contains("master re-execution failed, this image keeps running: execve /srv/app/app: Exec format error"))
        XCTAssertEqual(h.machine.reexecFailures, 1)
        XCTAssertEqual(h.machine.phase, .idle)
        XCTAssertEqual(h.send(.execNow), [], "nothing to exec any more")
    }

    func testAReexecRefusedByTheCheckChangesNothing() {
        var h = serving()
        h.send(.reexecRequested(reason: "baton reload --master", reply: token(1)))
        let actions = h.send(.reexecChecked(.refused("the new binary is not a Baton master")))
        XCTAssertTrue(actions.contains(.reply(token(1), .reexec(.refused("the new binary is not a Baton master")))))
        XCTAssertTrue(actions.contains(.count(.reexec("refused"))))
        XCTAssertTrue(actions.logs.contains("master re-execution refused, this image keeps running: the new binary is not a Baton master"))
        XCTAssertEqual(h.machine.lastReexec, "refused (baton reload --master): the new binary is not a Baton master")
        XCTAssertEqual(h.machine.phase, .idle)
    }

    func testReexecAskedDuringAnUpgradeIsRefused() {
        var h = serving()
        h.send(.trigger(reason: "SIGHUP", reply: nil, masterBinaryChanged: false))
        let staging = h.send(.reexecRequested(reason: "SIGUSR2", reply: token(1)))
        XCTAssertEqual(staging.replies.first?.1, .reexec(.refused("an upgrade is running (staging the release); try again once it has finished")))
        h.send(.launched(v2))
        h.send(.spawned(generation: 2, pid: 102, listeners: [http], hasInbox: true))
        let starting = h.send(.reexecRequested(reason: "SIGUSR2", reply: token(2)))
        XCTAssertEqual(starting.replies.first?.1, .reexec(.refused("an upgrade is running (generation 2 starting); try again once it has finished")))
        XCTAssertFalse(h.all.contains(.checkMasterImage))
        h.send(.reexecRequested(reason: "SIGUSR2", reply: nil))
        XCTAssertFalse(h.all.contains(.checkMasterImage), "no second re-execution either")
    }

    func testASecondReexecWhileOneRunsIsRefused() {
        var h = serving()
        h.send(.reexecRequested(reason: "SIGUSR2", reply: nil))
        let actions = h.send(.reexecRequested(reason: "baton reload --master", reply: token(1)))
        XCTAssertEqual(actions.replies.first?.1, .reexec(.refused("a master re-execution is already under way")))
    }

    func testTriggersDuringAReexecAreSupersededByItOrFollowAFailedOne() {
        var h = serving()
        h.send(.reexecRequested(reason: "baton reload --master", reply: token(1)))
        h.send(.trigger(reason: "SIGHUP", reply: token(2), masterBinaryChanged: false))
        h.send(.reexecChecked(.passed("ok")))
        let exec = h.send(.execNow)
        XCTAssertEqual(exec.replies.first?.0, token(2))
        guard case .upgrade(.failed(let reason))? = exec.replies.first?.1 else { return XCTFail("\(exec)") }
        XCTAssertTrue(reason.hasPrefix("superseded"))

        var other = serving()
        other.send(.reexecRequested(reason: "SIGUSR2", reply: nil))
        other.send(.trigger(reason: "SIGHUP", reply: token(3), masterBinaryChanged: false))
        let refused = other.send(.reexecChecked(.refused("no")))
        XCTAssertEqual(refused.last, .launch, "the waiting trigger becomes an upgrade")
        XCTAssertTrue(refused.contains(.absorbPendingConfigChanges(reason: "follow-up of SIGHUP")))
    }

    func testANewMasterBinaryOnDiskTakesTheMasterAlongWhenAsked() {
        var h = serving(.init(reexecMasterOnUpgrade: true))
        let actions = h.send(.trigger(reason: "baton reload", reply: token(1), masterBinaryChanged: true))
        XCTAssertEqual(actions.last, .checkMasterImage)
        XCTAssertEqual(h.send(.reexecChecked(.passed("ok"))).replies.first?.1, .reexec(.accepted("ok")))

        var off = serving()
        let upgrade = off.send(.trigger(reason: "baton reload", reply: token(1), masterBinaryChanged: true))
        XCTAssertEqual(upgrade.last, .launch, "off by default: an ordinary upgrade")
        off.send(.launched(v2))
        off.send(.spawned(generation: 2, pid: 102, listeners: [http], hasInbox: true))
        XCTAssertTrue(off.send(.notified(pid: 102, ready)).logs.contains { $0.contains("changed on disk since it started") })
    }

    func testACrashDuringAReexecCancelsItAndRollsBack() {
        var h = serving()
        upgrade(&h, to: v2, number: 2)
        h.send(.exited(pid: 101, .exited(0)))
        h.send(.reexecRequested(reason: "baton reload --master", reply: token(1)))
        let actions = h.send(.exited(pid: 102, .signaled(11)))
        XCTAssertTrue(actions.contains(.reply(token(1), .reexec(.refused("cancelled: generation 2 (pid 102, version 2) died during the re-execution")))))
        XCTAssertTrue(actions.contains(.count(.reexec("failed"))))
        XCTAssertTrue(actions.contains(.count(.rollback)))
        XCTAssertEqual(actions.last, .spawn(generation: 3, plan: v1))
        XCTAssertEqual(h.send(.reexecChecked(.passed("ok"))), [], "the check's late answer is ignored")
        XCTAssertFalse(h.all.contains(.execMaster))
    }

    func testTheNewImageResumesDrainTimersAndUpgradesTheWorkers() {
        let base = ContinuousClock.now
        var drainer = Generation(number: 1, pid: 101, version: "1", state: .draining, startedAt: base, plan: v1,
                                 listeners: [http], hasInbox: false, takesConnections: true)
        drainer.drainStartedAt = base + .seconds(1)
        var server = Generation(number: 2, pid: 102, version: "2", state: .serving, startedAt: base, plan: v2,
                                listeners: [http], hasInbox: false, takesConnections: true)
        server.readyAt = base + .seconds(1)
        let lost = Generation(number: 3, pid: 103, version: "2", state: .serving, startedAt: base, plan: v2, listeners: [http], hasInbox: false)
        var h = Harness()
        h.machine = Machine(settings: .init(), masterPath: "/srv/app/app", adopting: .init(
            generations: [drainer, server, lost], nextNumber: 4, currentPlan: v2, previousPlan: v1, consecutiveFailures: 0,
            lastUpgrade: nil, reexecFailures: 2))
        h.now = base + .seconds(11)
        let actions = h.send(.resume(lost: [103], execution: 1, image: "pid 42, /srv/app/app (Baton 0.1.0, execution 1, record from Baton 0.1.0)"))
        XCTAssertTrue(actions.logs.contains { $0.hasPrefix("master re-executed in place: pid 42, /srv/app/app (Baton 0.1.0, execution 1, record from Baton 0.1.0); took over 3 generation(s)") })
        XCTAssertTrue(actions.contains(.count(.reexec("succeeded"))))
        XCTAssertTrue(actions.contains(.forget(generation: 3)))
        XCTAssertTrue(actions.contains(.startTimer(.drain(generation: 1), after: .seconds(20))), "the deadline set by the old image holds")
        XCTAssertFalse(actions.contains { if case .tellSystemd(.reloading) = $0 { return true } else { return false } },
                       "the old image announced RELOADING=1 already")
        XCTAssertEqual(actions.suffix(2), [.absorbPendingConfigChanges(reason: "master re-executed"), .launch])
        XCTAssertEqual(h.machine.lastReexec, "re-executed /srv/app/app (execution 1)")
        XCTAssertEqual(h.machine.reexecFailures, 2)
        // A SIGHUP in the first milliseconds after the exec follows the upgrade under way.
        XCTAssertEqual(h.send(.trigger(reason: "SIGHUP", reply: nil, masterBinaryChanged: false)).logs,
                       ["upgrade requested (SIGHUP) while one is running: it will follow"])
        h.send(.launched(v2))
        let spawned = h.send(.spawned(generation: 4, pid: 104, listeners: [http], hasInbox: true))
        XCTAssertTrue(spawned.logs.contains { $0.contains("starting (master re-executed)") })
        let ready = h.send(.notified(pid: 104, self.ready))
        XCTAssertTrue(ready.contains(.sendDrainOrders(generation: 2, shared: [0], handoffTo: 4, deadline: .seconds(29))))
        XCTAssertTrue(ready.contains(.count(.upgrade(succeeded: true))))
        XCTAssertTrue(ready.contains(.launch), "the SIGHUP's follow-up")
    }

    // MARK: Shutdown

    func testShutdownDuringAnUpgradeDrainsEveryGenerationAndAnswersEveryWaiter() {
        var h = serving()
        h.send(.trigger(reason: "SIGHUP", reply: token(1), masterBinaryChanged: false))
        h.send(.launched(v2))
        h.send(.spawned(generation: 2, pid: 102, listeners: [http], hasInbox: true))
        h.send(.trigger(reason: "baton reload", reply: token(2), masterBinaryChanged: false))
        let actions = h.send(.shutdown)
        XCTAssertEqual(Set(actions.replies.map(\.0)), [token(1), token(2)])
        XCTAssertTrue(actions.replies.allSatisfy { $0.1 == .upgrade(.failed(reason: "the master is shutting down")) })
        XCTAssertTrue(actions.contains(.tellSystemd(.stopping("draining 2 generation(s)"))))
        XCTAssertTrue(actions.contains(.sendDrainOrders(generation: 1, shared: [], handoffTo: nil, deadline: .seconds(29))),
                      "every queue is the last generation's own: none other accepts")
        XCTAssertTrue(actions.contains(.sendDrainOrders(generation: 2, shared: [], handoffTo: nil, deadline: .seconds(29))))
        XCTAssertTrue(actions.contains(.signal(pid: 101, .terminate)))
        XCTAssertTrue(actions.contains(.signal(pid: 102, .terminate)))
        // The master's sockets close before any generation is told to take its queue: late
        // clients are refused, not queued where nobody accepts them.
        let closeAll = actions.firstIndex(of: .closeListeners)
        XCTAssertNotNil(closeAll)
        XCTAssertLessThan(closeAll ?? .max, actions.firstIndex { if case .sendDrainOrders = $0 { true } else { false } } ?? -1)
        XCTAssertEqual(h.send(.notified(pid: 102, ready)).filter { !$0.isLog }, [], "too late to serve")
        XCTAssertEqual(h.send(.trigger(reason: "SIGHUP", reply: token(3), masterBinaryChanged: false)),
                       [.reply(token(3), .upgrade(.failed(reason: "the master is shutting down")))])
        XCTAssertEqual(h.send(.shutdown), [], "a second shutdown changes nothing")
        h.send(.exited(pid: 101, .exited(0)))
        XCTAssertFalse(h.machine.isFinished)
        let last = h.send(.exited(pid: 102, .exited(0)))
        XCTAssertTrue(h.machine.isFinished)
        XCTAssertFalse(h.machine.firstGenerationFailed)
        XCTAssertFalse(last.contains { if case .startTimer(.restart, _) = $0 { return true } else { return false } })
    }

    func testShutdownDuringAReexecCancelsTheExec() {
        var h = serving()
        h.send(.reexecRequested(reason: "baton reload --master", reply: token(1)))
        h.send(.trigger(reason: "SIGHUP", reply: token(2), masterBinaryChanged: false))
        let actions = h.send(.shutdown)
        XCTAssertTrue(actions.contains(.reply(token(1), .reexec(.refused("the master is shutting down")))))
        XCTAssertTrue(actions.contains(.reply(token(2), .upgrade(.failed(reason: "the master is shutting down")))))
        XCTAssertEqual(h.send(.reexecChecked(.passed("ok"))), [])
        XCTAssertEqual(h.send(.execNow), [])
        XCTAssertFalse(h.all.contains(.execMaster))
    }

    func testShutdownWhileARestartWaitsStartsNothing() {
        var h = serving()
        h.advance(.seconds(20))
        h.send(.exited(pid: 101, .signaled(9)))
        h.send(.shutdown)
        XCTAssertTrue(h.machine.isFinished, "nothing was running")
        XCTAssertEqual(h.send(.timeout(.restart)), [])
    }

    func testShutdownWhileTheReleaseIsStagedIgnoresTheLaunchThatFollows() {
        var h = serving()
        h.send(.trigger(reason: "SIGHUP", reply: token(1), masterBinaryChanged: false))
        XCTAssertEqual(h.send(.shutdown).replies.first?.1, .upgrade(.failed(reason: "the master is shutting down")))
        XCTAssertEqual(h.send(.launched(v2)), [], "no generation starts during a shutdown")
        XCTAssertEqual(h.send(.launchFailed("late")), [])
    }

    func testShutdownWithTheExecPendingAndLateRequests() {
        var h = serving()
        h.send(.reexecRequested(reason: "baton reload --master", reply: token(1)))
        h.send(.reexecChecked(.passed("ok")))
        let actions = h.send(.shutdown)
        XCTAssertTrue(actions.replies.isEmpty, "the waiter was answered when the check passed")
        XCTAssertEqual(h.send(.timeout(.execNow)), [], "no exec once shutting down")
        XCTAssertEqual(h.send(.reexecRequested(reason: "SIGUSR2", reply: token(2))).replies.first?.1,
                       .reexec(.refused("the master is shutting down")))
        XCTAssertEqual(h.send(.execFailed("late")), [])
    }

    func testAWorkerSpawnedOutsideAnUpgradeIsStopped() {
        var h = serving()
        let actions = h.send(.spawned(generation: 7, pid: 107, listeners: [http], hasInbox: true))
        XCTAssertTrue(actions.contains(.signal(pid: 107, .kill)))
        XCTAssertEqual(h.machine.generations.map(\.pid), [101])
        XCTAssertEqual(h.send(.spawnFailed(generation: 7, reason: "x")), [], "nothing was waiting for it")
    }

    func testACrashWhileTheExecIsPendingCancelsIt() {
        var h = serving()
        h.advance(.seconds(20))
        h.send(.reexecRequested(reason: "baton reload --master", reply: token(1)))
        h.send(.reexecChecked(.passed("ok")))
        let actions = h.send(.exited(pid: 101, .signaled(9)))
        XCTAssertTrue(actions.replies.isEmpty, "answered already; the client learns it from the failure count")
        XCTAssertEqual(h.machine.reexecFailures, 1)
        XCTAssertTrue(actions.contains(.startTimer(.restart, after: .milliseconds(100))), "no rollback target: restart")
        XCTAssertEqual(h.send(.execNow), [], "cancelled")
    }

    func testDrainOrdersDeadlineLeavesTheWorkerTimeToExit() {
        XCTAssertEqual(DrainOrders.deadline(forDrainTimeout: .seconds(30)), .seconds(29))
        XCTAssertEqual(DrainOrders.deadline(forDrainTimeout: .seconds(5)), .milliseconds(4500))
    }
}

extension MasterStateMachine.Action {
    var isLog: Bool { if case .log = self { return true } else { return false } }
}

extension Array where Element == MasterStateMachine.Action {
    var logs: [String] { compactMap { if case .log(_, let text) = $0 { return text } else { return nil } } }
    var replies: [(MasterStateMachine.ReplyToken, MasterStateMachine.Reply)] {
        compactMap { if case .reply(let token, let reply) = $0 { return (token, reply) } else { return nil } }
    }
}
