import XCTest
@testable import Baton

final class ListenerSetTests: XCTestCase {
    func testAPortChangeBindsTheNewPortAndClosesTheOldOnceUnused() throws {
        let first = try Listener.bind(.tcp(host: "127.0.0.1", port: 0))
        let set = ListenerSet(initial: [(.tcp(host: "127.0.0.1", port: first.port!), first)], backlog: 128)
        defer { set.closeAll() }
        XCTAssertEqual(try set.listeners(for: nil), [first])
        XCTAssertEqual(try set.listeners(for: [.tcp(host: "127.0.0.1", port: first.port!)]), [first], "same address: same socket")

        let moved = try set.listeners(for: [.tcp(host: "127.0.0.1", port: 0)])
        XCTAssertEqual(moved.count, 1)
        XCTAssertNotEqual(moved, [first])
        XCTAssertEqual(set.closeUnused(inUse: [first] + moved), [], "both still used by a generation")
        XCTAssertNotNil(set.makeCurrent(moved))
        XCTAssertEqual(set.closeUnused(inUse: moved), [first.name], "the old port closes once its generation is gone")
        XCTAssertEqual(fcntl(first.fd, F_GETFD), -1, "closed")
    }

    /// At a stop the master closes them all before the drains; the final clean-up closes them
    /// again, which must not close a descriptor number some other file has taken since.
    func testClosingAllClosesEachSocketOnce() throws {
        let first = try Listener.bind(.tcp(host: "127.0.0.1", port: 0))
        let set = ListenerSet(initial: [(.tcp(host: "127.0.0.1", port: first.port!), first)], backlog: 128)
        let second = try set.listeners(for: [.tcp(host: "127.0.0.1", port: 0)])
        XCTAssertEqual(Set(set.closeAll()), Set([first] + second))
        XCTAssertEqual(fcntl(first.fd, F_GETFD), -1, "closed")
        XCTAssertEqual(try set.listeners(for: nil), [], "nothing is current any more")
        let reused = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(reused) }
        XCTAssertEqual(set.closeAll(), [], "closed already")
        XCTAssertNotEqual(fcntl(reused, F_GETFD), -1, "a descriptor opened since is left alone")
    }

    func testSocketsFromSocketActivationAreKeptWhateverThePlanSays() throws {
        let systemd = try Listener.bind(.tcp(host: "127.0.0.1", port: 0), name: "http")
        let set = ListenerSet(initial: [(nil, systemd)], backlog: 128)
        defer { set.closeAll() }
        XCTAssertTrue(set.adopted)
        XCTAssertEqual(try set.listeners(for: [.tcp(host: "127.0.0.1", port: 0)]), [systemd])
        XCTAssertEqual(set.closeUnused(inUse: []), [])
    }
}
