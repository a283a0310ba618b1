import CBaton
import Glibc
import XCTest
@testable import Baton

final class LaunchThreadTests: XCTestCase {
    private static func threadNice() -> Int32 { baton_thread_nice() }

    func testLaunchesRunAtALowerPriorityThanTheRestOfTheMaster() async throws {
        let before = Self.threadNice()
        let launcher = LaunchThread()
        let (nice, thread) = try await launcher.run { (Self.threadNice(), pthread_self()) }
        await launcher.shutdown()
        XCTAssertEqual(nice, min(19, before + LaunchThread.niceIncrement))
        if before < 19 { XCTAssertGreaterThan(nice, before) }  // a runner at 19 leaves no room
        XCTAssertNotEqual(thread, pthread_self())
        // Only that thread: this one (and every thread it starts) keeps its priority.
        XCTAssertEqual(Self.threadNice(), before)
    }

    func testErrorsOfALaunchComeBack() async {
        struct Refused: Error {}
        let launcher = LaunchThread()
        do {
            _ = try await launcher.run { () throws -> Int in throw Refused() }
            XCTFail("the error was lost")
        } catch {
            XCTAssertTrue(error is Refused)
        }
        await launcher.shutdown()
    }
}
