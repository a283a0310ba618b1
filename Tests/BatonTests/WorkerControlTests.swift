import XCTest
#if canImport(Glibc)
import Glibc
#endif
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

    func testSendingToAWorkerThatIsGoneFailsQuietly() throws {
        let control = try WorkerControl.make()
        defer { close(control.masterEnd) }
        close(control.workerEnd)
        // Without MSG_NOSIGNAL this would raise SIGPIPE and end the test process.
        XCTAssertFalse(WorkerControl.send(DrainOrders(sharedListeners: []), on: control.masterEnd))
    }
}
