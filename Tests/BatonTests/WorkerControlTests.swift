import XCTest
#if canImport(Glibc)
import Glibc
#endif
import CBaton
@testable import Baton

/// The master's control channel to a worker: what a draining worker is told.
final class WorkerControlTests: XCTestCase {
    func testDrainOrdersReachTheWorker() throws {
        let control = try WorkerControl.make()
        defer { close(control.masterEnd); close(control.workerEnd) }
        let worker = BatonWorker(generation: 2, version: "1", masterPID: getpid(), listeners: [], notifySocket: nil,
                                 controlFD: control.workerEnd)
        XCTAssertNil(worker.drainOrders(), "nothing was said yet")
        XCTAssertTrue(WorkerControl.send(DrainOrders(sharedListeners: [0, 2]), on: control.masterEnd))
        XCTAssertEqual(worker.drainOrders(), DrainOrders(sharedListeners: [0, 2]))
    }

    func testParsing() {
        XCTAssertEqual(DrainOrders(parsing: "drain shared=\n"), DrainOrders(sharedListeners: []))
        XCTAssertEqual(DrainOrders(parsing: "drain shared=1,0\n"), DrainOrders(sharedListeners: [0, 1]))
        XCTAssertEqual(DrainOrders(parsing: "drain shared=0\ndrain shared=\n"), DrainOrders(sharedListeners: []), "the last line counts")
        XCTAssertEqual(DrainOrders(parsing: "hello\ndrain future=1 shared=3\n"), DrainOrders(sharedListeners: [3]), "unknown fields are ignored")
        XCTAssertNil(DrainOrders(parsing: "drain shared=x\n"))
        XCTAssertNil(DrainOrders(parsing: "drain shared=-1\n"))
        XCTAssertNil(DrainOrders(parsing: "drain\n"))
        XCTAssertNil(DrainOrders(parsing: ""))
    }

    /// Orders with `handoff=1` carry the next generation's connection inbox as SCM_RIGHTS: what
    /// the worker gets is a working descriptor of the same socket.
    func testDrainOrdersCarryTheNextGenerationsInbox() throws {
        let control = try WorkerControl.make()
        defer { close(control.masterEnd); close(control.workerEnd) }
        let inbox = try ConnectionInbox.make()
        defer { close(inbox.senderEnd); close(inbox.receiverEnd) }
        let worker = BatonWorker(generation: 2, version: "1", masterPID: getpid(), listeners: [], notifySocket: nil,
                                 controlFD: control.workerEnd)
        XCTAssertTrue(WorkerControl.send(DrainOrders(sharedListeners: [0], connectionInbox: inbox.senderEnd), on: control.masterEnd))
        let orders = try XCTUnwrap(worker.drainOrders())
        XCTAssertEqual(orders.sharedListeners, [0])
        let received = try XCTUnwrap(orders.connectionInbox, "no descriptor came with handoff=1")
        defer { close(received) }
        XCTAssertNotEqual(received, inbox.senderEnd, "a new descriptor in the receiving process")
        XCTAssertEqual(fcntl(received, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC, "received close-on-exec")
        // It is the inbox's sending end: a message sent on it arrives at the receiving end.
        let message = Array(ConnectionInbox.message.utf8)
        XCTAssertEqual(message.withUnsafeBytes { send(received, $0.baseAddress, $0.count, 0) }, message.count)
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = buffer.withUnsafeMutableBytes { recv(inbox.receiverEnd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        XCTAssertEqual(Array(buffer[0..<max(0, n)]), message)
    }

    func testHandoffFlagWithoutDescriptorMeansNoHandoff() {
        XCTAssertEqual(DrainOrders(parsing: "drain shared=0 handoff=1\n", inbox: nil), DrainOrders(sharedListeners: [0]))
        XCTAssertEqual(DrainOrders(parsing: "drain shared=0 handoff=1\n", inbox: 9), DrainOrders(sharedListeners: [0], connectionInbox: 9))
        XCTAssertEqual(DrainOrders(parsing: "drain shared=0\n", inbox: 9), DrainOrders(sharedListeners: [0]), "a descriptor without handoff=1 is not used")
        XCTAssertEqual(DrainOrders(sharedListeners: [1], connectionInbox: 5).line, "drain shared=1 handoff=1\n")
    }

    /// The master says by when the worker must be done, so adapters need not guess it.
    func testDrainOrdersCarryTheDeadline() {
        let orders = DrainOrders(sharedListeners: [0], connectionInbox: 7, deadline: .milliseconds(27_500))
        XCTAssertEqual(orders.line, "drain shared=0 handoff=1 deadline=27500\n")
        XCTAssertEqual(DrainOrders(parsing: orders.line, inbox: 7), orders)
        XCTAssertEqual(DrainOrders(parsing: "drain shared=0\n")?.deadline, nil, "an older master says nothing")
        XCTAssertNil(DrainOrders(parsing: "drain shared=0 deadline=soon\n"))
        XCTAssertNil(DrainOrders(parsing: "drain shared=0 deadline=-5\n"))
    }

    /// One layout for both sides: listeners from fd 3, then the control channel, then the inbox.
    func testDescriptorLayout() {
        let layout = WorkerDescriptors(listenerCount: 2)
        XCTAssertEqual(layout.control, 5)
        XCTAssertEqual(layout.inbox, 6)
        XCTAssertEqual(layout.order(listeners: [20, 21], control: 30, inbox: 31), [20, 21, 30, 31])
        let environment = WorkerEnvironment.make(inherited: [:], plan: LaunchPlan(executable: "/bin/true"),
                                                 listeners: [Listener(fd: 20, name: "a"), Listener(fd: 21, name: "b")],
                                                 generation: 1, notifySocketPath: "/n", masterPID: 1, control: true)
        XCTAssertEqual(environment[WorkerEnvironment.controlFD], "5")
        XCTAssertEqual(environment[WorkerEnvironment.connectionInboxFD], "6")
    }

    func testSendingToAWorkerThatIsGoneFailsQuietly() throws {
        let control = try WorkerControl.make()
        defer { close(control.masterEnd) }
        close(control.workerEnd)
        // Without MSG_NOSIGNAL this would raise SIGPIPE and end the test process.
        XCTAssertFalse(WorkerControl.send(DrainOrders(sharedListeners: []), on: control.masterEnd))
    }

    /// A canary upgrade's orders share the channel with the drain's: each descriptor stays with
    /// its own line, whichever order they are read in, and each reader takes only its own.
    func testCanaryAndDrainOrdersKeepTheirOwnDescriptors() throws {
        let control = try WorkerControl.make()
        defer { close(control.masterEnd); close(control.workerEnd) }
        let canaryInbox = try ConnectionInbox.make()
        defer { close(canaryInbox.senderEnd); close(canaryInbox.receiverEnd) }
        let nextInbox = try ConnectionInbox.make()
        defer { close(nextInbox.senderEnd); close(nextInbox.receiverEnd) }
        let channel = ControlChannel(fd: control.workerEnd)
        XCTAssertTrue(WorkerControl.send(.share(percent: 10, inbox: canaryInbox.senderEnd), on: control.masterEnd))
        XCTAssertTrue(WorkerControl.send(.share(percent: 0, inbox: nil), on: control.masterEnd))
        XCTAssertTrue(WorkerControl.send(DrainOrders(sharedListeners: [0], connectionInbox: nextInbox.senderEnd), on: control.masterEnd))
        XCTAssertTrue(WorkerControl.send(.accept, on: control.masterEnd))
        // The drain takes its orders first: the canary orders wait for their reader.
        let drain = try XCTUnwrap(channel.takeDrainOrders())
        let drainInbox = try XCTUnwrap(drain.connectionInbox)
        defer { close(drainInbox) }
        XCTAssertTrue(Self.isSameSocket(drainInbox, as: nextInbox.receiverEnd), "the drain's descriptor is the next generation's inbox")
        let orders = channel.takeWorkerOrders()
        XCTAssertEqual(orders.count, 3)
        guard case .share(10, let shared?) = orders.first else { return XCTFail("\(orders)") }
        defer { close(shared) }
        XCTAssertTrue(Self.isSameSocket(shared, as: canaryInbox.receiverEnd), "the share's descriptor is the canary's inbox")
        XCTAssertEqual(Array(orders.dropFirst()), [.share(percent: 0, inbox: nil), .accept])
        XCTAssertEqual(channel.takeWorkerOrders(), [])
        XCTAssertNil(channel.takeDrainOrders())
        XCTAssertFalse(channel.ended)
    }

    /// A drain called off: `resume` comes on the channel, and later the next drain's orders,
    /// which the follower sees waiting without taking them (the drain takes them).
    func testResumeThenTheNextDrainOrdersWaitForTheDrain() throws {
        let control = try WorkerControl.make()
        defer { close(control.masterEnd); close(control.workerEnd) }
        let channel = ControlChannel(fd: control.workerEnd)
        XCTAssertTrue(WorkerControl.send(.resume, on: control.masterEnd))
        XCTAssertFalse(channel.hasDrainOrders)
        XCTAssertEqual(channel.takeWorkerOrders(), [.resume])
        XCTAssertTrue(WorkerControl.send(DrainOrders(sharedListeners: [0], deadline: .seconds(20)), on: control.masterEnd))
        XCTAssertTrue(channel.hasDrainOrders)
        XCTAssertTrue(channel.hasDrainOrders, "looking does not take them")
        XCTAssertEqual(channel.takeDrainOrders()?.deadline, .seconds(20))
        XCTAssertFalse(channel.hasDrainOrders)
    }

    func testWorkerOrderParsing() {
        XCTAssertEqual(WorkerOrder(parsing: "resume", descriptor: nil), .resume)
        XCTAssertNil(WorkerOrder(parsing: "resume now", descriptor: nil))
        XCTAssertEqual(WorkerOrder(parsing: "hurry", descriptor: nil), .hurry)
        XCTAssertEqual(WorkerOrder.hurry.line, "hurry\n")
        XCTAssertNil(WorkerOrder(parsing: "hurry up", descriptor: nil))
        XCTAssertEqual(WorkerOrder(parsing: "accept", descriptor: nil), .accept)
        XCTAssertEqual(WorkerOrder(parsing: "share percent=20 handoff=1", descriptor: 7), .share(percent: 20, inbox: 7))
        XCTAssertEqual(WorkerOrder(parsing: "share percent=0", descriptor: nil), .share(percent: 0, inbox: nil))
        XCTAssertNil(WorkerOrder(parsing: "share percent=20", descriptor: nil), "a share without the canary's inbox")
        XCTAssertNil(WorkerOrder(parsing: "share percent=101 handoff=1", descriptor: 7))
        XCTAssertNil(WorkerOrder(parsing: "share percent=x handoff=1", descriptor: 7))
        XCTAssertNil(WorkerOrder(parsing: "accept now", descriptor: nil))
        XCTAssertNil(WorkerOrder(parsing: "drain shared=0", descriptor: nil))
        XCTAssertEqual(WorkerOrder(parsing: "master pid=42", descriptor: 9), .master(pid: 42, pidfd: 9))
        XCTAssertNil(WorkerOrder(parsing: "master pid=42", descriptor: nil), "a new master without its pidfd cannot be watched")
        XCTAssertNil(WorkerOrder(parsing: "master pid=0", descriptor: 9))
        XCTAssertNil(WorkerOrder(parsing: "master pid=x", descriptor: 9))
        XCTAssertNil(WorkerOrder(parsing: "master", descriptor: 9))
    }

    /// The adopting master's announcement reaches the worker with a pidfd on that master.
    func testTheAdoptingMastersPidfdComesWithItsLine() throws {
        let control = try WorkerControl.make()
        defer { close(control.masterEnd); close(control.workerEnd) }
        let channel = ControlChannel(fd: control.workerEnd)
        let pidfd = baton_pidfd_open(getpid())
        defer { close(pidfd) }
        XCTAssertTrue(WorkerControl.send(.master(pid: getpid(), pidfd: pidfd), on: control.masterEnd))
        let orders = channel.takeWorkerOrders()
        guard case .master(let pid, let received)? = orders.first, orders.count == 1 else { return XCTFail("\(orders)") }
        defer { close(received) }
        XCTAssertEqual(pid, getpid())
        XCTAssertNotEqual(received, pidfd)
        var poll = pollfd(fd: received, events: Int16(POLLIN), revents: 0)
        XCTAssertEqual(Glibc.poll(&poll, 1, 0), 0, "a pidfd on a live process is not readable")
    }

    /// Whether a message sent on `sender` arrives at `receiver`.
    private static func isSameSocket(_ sender: Int32, as receiver: Int32) -> Bool {
        let message = Array("probe".utf8)
        guard message.withUnsafeBytes({ Glibc.send(sender, $0.baseAddress, $0.count, 0) }) == message.count else { return false }
        var buffer = [UInt8](repeating: 0, count: 16)
        let n = buffer.withUnsafeMutableBytes { recv(receiver, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        return n == message.count
    }
}
