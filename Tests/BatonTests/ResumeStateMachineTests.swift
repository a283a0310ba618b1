import XCTest
@testable import Baton

/// A successor that dies while the generation it replaced still drains: the master's decisions,
/// event by event, without a process.
final class ResumeStateMachineTests: MasterStateMachineTestCase {
    let admin = Listener(fd: 11, name: "admin")
    /// What a Baton NIO worker of this release says when ready.
    let ready = NotifyMessage([("READY", "1"), ("BATON_HANDOFF", "1"), ("BATON_CANARY", "1"), ("BATON_RESUME", "1")])
    /// What a worker of the release before says: its drain cannot be called off.
    let readyBefore = NotifyMessage([("READY", "1"), ("BATON_HANDOFF", "1"), ("BATON_CANARY", "1")])

    /// Generation 1 (pid 101) of v1 serving.
    func serving(ready message: NotifyMessage? = nil) -> Harness {
        startServing(ready: message ?? ready)
    }

    /// Upgrades to `plan` as generation `number` (pid 100 + number), ready on `listeners`.
    @discardableResult
    func upgrade(_ h: inout Harness, to plan: LaunchPlan, number: Int, listeners: [Listener]? = nil) -> [Action] {
        h.send(.trigger(reason: "SIGHUP", reply: nil, masterBinaryChanged: false))
        h.send(.launched(plan))
        h.send(.spawned(generation: number, pid: Int32(100 + number), listeners: listeners ?? [http], hasInbox: true))
        h.advance(.milliseconds(100))
        return h.send(.notified(pid: Int32(100 + number), ready))
    }

    func testASuccessorDyingInProbationGivesTheTrafficBackToTheDrainer() {
        var h = serving()
        upgrade(&h, to: v2, number: 2)
        XCTAssertEqual(h.machine.generations.map(\.state), [.draining, .serving])
        h.advance(.milliseconds(500))
        let died = h.send(.exited(pid: 102, .signaled(9)))
        XCTAssertTrue(died.contains(.sendResume(generation: 1)))
        XCTAssertFalse(died.contains { if case .spawn = $0 { return true } else { return false } }, "nothing to start: generation 1 serves")
        XCTAssertFalse(died.contains { if case .startTimer(.restart, _) = $0 { return true } else { return false } })
        XCTAssertTrue(died.contains(.count(.rollback)))
        XCTAssertTrue(died.contains { if case .log(.critical, let text) = $0 {
            return text.hasPrefix("ROLLBACK: generation 2 (pid 102, version 2) died 500 ms after taking over")
                && text.contains("generation 1 (pid 101, version 1), still draining, serves again")
        } else { return false } })
        XCTAssertEqual(h.machine.generations.map(\.state), [.serving])
        XCTAssertNil(h.machine.generations[0].drainStartedAt)
        XCTAssertEqual(h.machine.currentPlan, v1)
        XCTAssertNil(h.machine.previousPlan, "no rollback of the rollback")
        XCTAssertFalse(h.machine.isBusy)

        // Its old drain timer finds it serving: no SIGKILL.
        h.advance(.seconds(30))
        XCTAssertEqual(h.send(.timeout(.drain(generation: 1))), [])
    }

    func testTheNextDrainOfAResumedGenerationComesAsOrdersWithoutASecondSIGTERM() {
        var h = serving()
        upgrade(&h, to: v2, number: 2)
        h.send(.exited(pid: 102, .signaled(9)))
        let next = upgrade(&h, to: v3, number: 3)
        XCTAssertTrue(next.contains(.sendDrainOrders(generation: 1, shared: [0], handoffTo: 3, deadline: .seconds(29))))
        XCTAssertFalse(next.contains(.signal(pid: 101, .terminate)), "its graceful shutdown began with the first SIGTERM")
        XCTAssertTrue(next.contains(.startTimer(.drain(generation: 1), after: .seconds(30))), "a new drain deadline replaces the old timer")
        XCTAssertTrue(next.logs.contains { $0.contains("generation 1 (pid 101, version 1) draining (drain orders)") })
        XCTAssertEqual(h.machine.generations.map(\.state), [.draining, .serving])
    }

    func testASuccessorDyingAfterProbationIsStartedAgainWhileTheDrainerServes() {
        var h = serving()
        upgrade(&h, to: v2, number: 2)
        h.advance(.seconds(11))
        let died = h.send(.exited(pid: 102, .exited(1)))
        XCTAssertTrue(died.contains(.sendResume(generation: 1)))
        XCTAssertFalse(died.contains(.count(.rollback)), "v2 passed its probation: not a rollback")
        XCTAssertTrue(died.contains(.count(.restart)))
        XCTAssertEqual(died.last, .spawn(generation: 3, plan: v2), "the current release again")
        XCTAssertEqual(h.machine.currentPlan, v2)
        h.send(.spawned(generation: 3, pid: 103, listeners: [http], hasInbox: true))
        let back = h.send(.notified(pid: 103, ready))
        XCTAssertTrue(back.contains(.sendDrainOrders(generation: 1, shared: [0], handoffTo: 3, deadline: .seconds(29))))
        XCTAssertFalse(back.contains(.signal(pid: 101, .terminate)))
        XCTAssertEqual(h.machine.generations.map(\.state), [.draining, .serving])
    }

    func testOnlyTheNewestDrainerForTheDeadGenerationResumes() {
        var h = serving()
        upgrade(&h, to: v2, number: 2)
        upgrade(&h, to: v3, number: 3)
        // Generation 1 was pointed at generation 3 too: both drain for it.
        XCTAssertEqual(h.machine.generations.map(\.state), [.draining, .draining, .serving])
        let died = h.send(.exited(pid: 103, .signaled(11)))
        XCTAssertTrue(died.contains(.sendResume(generation: 2)))
        XCTAssertFalse(died.contains(.sendResume(generation: 1)))
        XCTAssertEqual(h.machine.generations.map(\.state), [.draining, .serving])
        XCTAssertEqual(h.machine.currentPlan, v2)
    }

    func testAWorkerThatCannotResumeKeepsTheOldRollback() {
        var h = serving(ready: readyBefore)
        upgrade(&h, to: v2, number: 2)
        let died = h.send(.exited(pid: 102, .signaled(9)))
        XCTAssertFalse(died.contains { if case .sendResume = $0 { return true } else { return false } })
        XCTAssertEqual(died.last, .spawn(generation: 3, plan: v1), "the previous release is started again")
    }

    func testNoResumeAfterAPortChange() {
        var h = serving()
        upgrade(&h, to: v2, number: 2, listeners: [admin])
        let died = h.send(.exited(pid: 102, .signaled(9)))
        XCTAssertFalse(died.contains { if case .sendResume = $0 { return true } else { return false } },
                       "generation 1 closed the old port when it began draining; the new one is not its")
        XCTAssertEqual(died.last, .spawn(generation: 3, plan: v1))
    }

    func testNoResumeWhenShuttingDown() {
        var h = serving()
        upgrade(&h, to: v2, number: 2)
        h.send(.shutdown)
        let died = h.send(.exited(pid: 102, .signaled(9)))
        XCTAssertFalse(died.contains { if case .sendResume = $0 { return true } else { return false } })
    }
}
