import Logging
import NIOCore
import NIOEmbedded
import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import BatonNIO

/// Notes when (on the loop's virtual clock) a connection learned of the drain.
private final class DrainRecorder: ChannelInboundHandler {
    typealias InboundIn = Never
    let loop: EmbeddedEventLoop
    private(set) var toldAt: NIODeadline?
    private(set) var handoff: ConnectionHandoff?
    private(set) var resumed = false

    init(loop: EmbeddedEventLoop) { self.loop = loop }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ResumeConnectionEvent { resumed = true }
        guard let drain = event as? DrainConnectionEvent, toldAt == nil else { return }
        toldAt = loop.now
        handoff = drain.handoff
    }
}

final class DrainPacerTests: XCTestCase {
    private var loop: EmbeddedEventLoop!
    private var channels: [EmbeddedChannel] = []
    private var recorders: [DrainRecorder] = []

    override func setUp() {
        loop = EmbeddedEventLoop()
    }

    override func tearDown() {
        for channel in channels { _ = try? channel.finish() }
    }

    private func makeConnections(_ count: Int) throws {
        for _ in 0..<count {
            let recorder = DrainRecorder(loop: loop)
            let channel = EmbeddedChannel(handler: recorder, loop: loop)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 80)).wait()
            channels.append(channel)
            recorders.append(recorder)
        }
    }

    private func told() -> Int { recorders.filter { $0.toldAt != nil }.count }

    func testTellsConnectionsEvenlyOverTheSpreadInTheOrderGiven() throws {
        try makeConnections(100)
        let start = loop.now
        DrainPacer.start(DrainConnectionEvent(), to: channels, on: loop, over: .milliseconds(100))
        loop.run()
        XCTAssertEqual(told(), 1, "the first connection goes at once, not all of them")
        loop.advanceTime(by: .milliseconds(50))
        XCTAssertEqual(Double(told()), 51, accuracy: 2, "half the spread: half the connections")
        loop.advanceTime(by: .milliseconds(50))
        XCTAssertEqual(told(), 100, "every connection has been told by the end of the spread")
        let times = recorders.map { $0.toldAt! }
        XCTAssertEqual(times, times.sorted(), "in the order given")
        XCTAssertLessThanOrEqual(times.last! - start, .milliseconds(100))
    }

    func testAZeroSpreadTellsEveryConnectionAtOnce() throws {
        try makeConnections(5)
        DrainPacer.start(DrainConnectionEvent(), to: channels, on: loop, over: .zero)
        loop.run()
        XCTAssertEqual(told(), 5)
    }

    func testTheRegistryPacesOnlyConnectionsTheNextGenerationTakes() throws {
        try makeConnections(40)
        let registry = ConnectionRegistry()
        // Half the connections came from listener 0, which the next generation shares; the
        // others from listener 1, which it does not serve (a port change).
        for (index, channel) in channels.enumerated() {
            registry.willAccept()
            registry.accepted(channel, listener: index % 2)
        }
        var inbox: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &inbox), 0)
        defer { close(inbox[1]) }
        let handoff = ConnectionHandoff(inbox: inbox[0], listenerNames: ["a", "b"], handingOver: [0], window: .seconds(10),
                                        spread: .milliseconds(200), logger: Logger(label: "test"))
        defer { handoff.close() }  // closes inbox[0]
        registry.startDraining(handoff: handoff)
        loop.run()
        let leaving = recorders.indices.filter { $0 % 2 == 1 }.map { recorders[$0] }
        let moving = recorders.indices.filter { $0 % 2 == 0 }.map { recorders[$0] }
        XCTAssertTrue(leaving.allSatisfy { $0.toldAt != nil }, "connections that cannot move are told at once, to close")
        XCTAssertLessThanOrEqual(moving.filter { $0.toldAt != nil }.count, 1)
        loop.advanceTime(by: .milliseconds(200))
        XCTAssertTrue(moving.allSatisfy { $0.toldAt != nil && $0.handoff === handoff })
        // A connection registered after the drain began learns of it at once.
        try makeConnections(1)
        registry.willAccept()
        registry.accepted(channels.last!, listener: 0)
        loop.run()
        XCTAssertNotNil(recorders.last!.toldAt)
    }

    func testADrainCalledOffStopsThePacerAndResumesEveryConnection() throws {
        try makeConnections(20)
        let registry = ConnectionRegistry()
        for channel in channels {
            registry.willAccept()
            registry.accepted(channel, listener: 0)
        }
        var inbox: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &inbox), 0)
        defer { close(inbox[1]) }
        let handoff = ConnectionHandoff(inbox: inbox[0], listenerNames: ["a"], handingOver: [0], window: .seconds(10),
                                        spread: .milliseconds(200), logger: Logger(label: "test"))
        defer { handoff.close() }
        registry.startDraining(handoff: handoff)
        loop.advanceTime(by: .milliseconds(100))
        let toldBefore = told()
        XCTAssertEqual(Double(toldBefore), 11, accuracy: 2)
        registry.stopDraining()
        loop.run()
        XCTAssertEqual(recorders.map(\.resumed).filter { $0 }.count, 20, "every open connection hears that the drain is off")
        loop.advanceTime(by: .milliseconds(200))
        XCTAssertEqual(told(), toldBefore, "the rest are not told of a drain that was called off")
        // A connection registered now is not draining.
        try makeConnections(1)
        registry.willAccept()
        registry.accepted(channels.last!, listener: 0)
        loop.run()
        XCTAssertNil(recorders.last!.toldAt)
    }
}
