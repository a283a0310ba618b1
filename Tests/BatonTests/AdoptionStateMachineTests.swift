import XCTest
@testable import Baton

/// A master that took over the generations of one that died: its decisions, without a process.
final class AdoptionStateMachineTests: MasterStateMachineTestCase {
    private func generation(_ number: Int, _ state: Generation.State, plan: LaunchPlan, now: ContinuousClock.Instant) -> Generation {
        var generation = Generation(number: number, pid: Int32(100 + number), version: plan.version, state: state,
                                    startedAt: now - .seconds(60), plan: plan, listeners: [http], hasInbox: false, takesConnections: true)
        generation.readyAt = now - .seconds(59)
        if state == .draining { generation.drainStartedAt = now - .seconds(10) }
        return generation
    }

    private func adopting(_ generations: [Generation], adoptions: Int = 0, stopping: Bool = false) -> Harness {
        var h = Harness()
        h.machine = Machine(settings: .init(), masterPath: "/srv/app/app", adopting: .init(
            generations: generations, nextNumber: 9, currentPlan: v2, previousPlan: v1, consecutiveFailures: 0,
            lastUpgrade: nil, reexecFailures: 0, adoptions: adoptions, stopping: stopping))
        return h
    }

    func testTheAdoptedGenerationsServeOnAndNothingIsStarted() {
        let now = ContinuousClock.now
        var h = adopting([generation(1, .draining, plan: v1, now: now), generation(2, .serving, plan: v2, now: now)], adoptions: 2)
        h.now = now
        let actions = h.send(.adopt(lost: [], lostGenerations: [], from: 4242))
        XCTAssertTrue(actions.contains(.announceMaster(generation: 1)))
        XCTAssertTrue(actions.contains(.announceMaster(generation: 2)))
        XCTAssertTrue(actions.contains(.count(.adoption)))
        XCTAssertTrue(actions.contains(.startTimer(.drain(generation: 1), after: .seconds(20))), "the drain deadline goes on: \(actions)")
        XCTAssertFalse(actions.contains { if case .spawn = $0 { return true } else { return false } }, "nothing is started")
        XCTAssertFalse(actions.contains(.launch), "no upgrade follows an adoption")
        XCTAssertFalse(actions.contains { if case .signal = $0 { return true } else { return false } })
        XCTAssertEqual(h.machine.adoptions, 3)
        XCTAssertEqual(h.machine.lastAdoption, "adopted 2 generation(s) from master pid 4242")
        XCTAssertTrue(actions.contains(.log(.notice, "adopted 2 generation(s) from master pid 4242 (1 draining, 2 serving); adoption 3 of this service")))
        XCTAssertEqual(h.machine.generations.map(\.state), [.draining, .serving])
        XCTAssertFalse(h.machine.isBusy)
    }

    /// The upgrade the dead master ran died with it: its new generation is stopped, and what
    /// served goes on serving; a generation whose channels were lost is reported.
    func testAnUpgradeUnderWayIsAbandonedAndLostGenerationsAreReported() {
        let now = ContinuousClock.now
        var h = adopting([generation(2, .serving, plan: v2, now: now), generation(3, .starting, plan: v3, now: now)])
        h.now = now
        let actions = h.send(.adopt(lost: [], lostGenerations: [4], from: 77))
        XCTAssertTrue(actions.contains(.signal(pid: 103, .terminate)), "\(actions)")
        XCTAssertEqual(h.machine.generations.map(\.state), [.serving, .draining])
        XCTAssertEqual(h.machine.lastAdoption, "adopted 2 generation(s) from master pid 77, lost 4")
        XCTAssertTrue(actions.contains { if case .log(.warning, let text) = $0 { return text.contains("generation 3") && text.contains("run the upgrade again") } else { return false } })
    }

    /// Nothing left serving (every generation was lost): the master starts the current release.
    func testNothingLeftServingStartsTheCurrentReleaseAgain() {
        let now = ContinuousClock.now
        var h = adopting([generation(2, .serving, plan: v2, now: now)])
        h.now = now
        let actions = h.send(.adopt(lost: [102], lostGenerations: [], from: 77))
        XCTAssertTrue(actions.contains(.forget(generation: 2)))
        XCTAssertTrue(h.machine.generations.isEmpty)
        XCTAssertTrue(actions.contains { if case .startTimer(.restart, _) = $0 { return true } else { return false } }, "\(actions)")
    }

    /// The dead master was stopping (SIGTERM, `baton stop`): the stop was asked for, and a master
    /// started again (by its keeper, or a supervisor loop) finishes it instead of starting the
    /// release again; it is done when the last generation has exited.
    func testAMasterThatDiedWhileStoppingIsFollowedByOneThatFinishesTheStop() {
        let now = ContinuousClock.now
        var h = adopting([generation(2, .draining, plan: v2, now: now)], stopping: true)
        h.now = now
        let actions = h.send(.adopt(lost: [], lostGenerations: [], from: 77))
        XCTAssertTrue(actions.contains(.log(.notice, "master pid 77 died while stopping: finishing the stop")), "\(actions)")
        XCTAssertTrue(actions.contains(.announceMaster(generation: 2)))
        XCTAssertTrue(actions.contains(.startTimer(.drain(generation: 2), after: .seconds(20))), "its drain deadline holds")
        XCTAssertFalse(actions.contains { if case .startTimer(.restart, _) = $0 { true } else { false } }, "nothing starts again: \(actions)")
        XCTAssertFalse(actions.contains { if case .tellSystemd(.ready) = $0 { true } else { false } })
        XCTAssertTrue(h.machine.isStopping)
        let reply = Machine.ReplyToken(id: 1)
        XCTAssertEqual(h.send(.trigger(reason: "SIGHUP", reply: reply, masterBinaryChanged: false)),
                       [.reply(reply, .upgrade(.failed(reason: "the master is shutting down")))])
        h.send(.exited(pid: 102, .exited(0)))
        XCTAssertTrue(h.machine.isFinished)
    }

    /// Its workers were all gone by the time it adopted: nothing is left to wait for.
    func testAStopWhoseWorkersAreGoneIsFinishedAtOnce() {
        let now = ContinuousClock.now
        var h = adopting([generation(2, .draining, plan: v2, now: now)], stopping: true)
        h.now = now
        h.send(.adopt(lost: [102], lostGenerations: [], from: 77))
        XCTAssertTrue(h.machine.isFinished)
    }
}
