import XCTest
@testable import Baton

/// What the tests of the master's state machine share: the releases and listener they start, and
/// a harness that drives a ``MasterStateMachine`` event by event without a process.
class MasterStateMachineTestCase: XCTestCase {
    typealias Machine = MasterStateMachine
    typealias Action = Machine.Action

    let v1 = LaunchPlan(executable: "/srv/app/.baton/releases/1/app", version: "1")
    let v2 = LaunchPlan(executable: "/srv/app/.baton/releases/2/app", version: "2")
    let v3 = LaunchPlan(executable: "/srv/app/.baton/releases/3/app", version: "3")
    let http = Listener(fd: 10, name: "http")

    /// A machine, a clock the test moves, and every action the machine returned.
    struct Harness {
        var machine: Machine
        var now = ContinuousClock.now
        var all: [Action] = []

        init(_ settings: Machine.Settings = .init()) {
            machine = Machine(settings: settings, masterPath: "/srv/app/app")
        }

        @discardableResult
        mutating func send(_ event: Machine.Event) -> [Action] {
            let actions = machine.handle(event, at: now)
            all += actions
            return actions
        }

        mutating func advance(_ duration: Duration) { now += duration }
    }

    /// Generation 1 (pid 101) of `v1` on `http`, ready with `message`.
    func startServing(ready message: NotifyMessage) -> Harness {
        var h = Harness()
        h.send(.start)
        h.send(.launched(v1))
        h.send(.spawned(generation: 1, pid: 101, listeners: [http], hasInbox: true))
        h.send(.notified(pid: 101, message))
        XCTAssertEqual(h.machine.generations.map(\.state), [.serving])
        return h
    }
}
