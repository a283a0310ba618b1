#if canImport(Glibc)
import Glibc
#endif
import XCTest
@testable import Baton

final class HandedDescriptorTests: XCTestCase {
    func testAbsentIsNoProblem() {
        XCTAssertEqual(HandedDescriptor.adopt("BATON_CONTROL_FD", in: [:], at: 4), .init(fd: nil, problem: nil))
    }

    func testAdoptsAnOpenDescriptorWhereTheProtocolPutsIt() throws {
        var ends: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&ends), 0)
        defer { close(ends[0]); close(ends[1]) }
        let adoption = HandedDescriptor.adopt("BATON_CONTROL_FD", in: ["BATON_CONTROL_FD": "\(ends[0])"], at: ends[0])
        XCTAssertEqual(adoption, .init(fd: ends[0], problem: nil))
        XCTAssertEqual(fcntl(ends[0], F_GETFD) & FD_CLOEXEC, FD_CLOEXEC)
    }

    func testSaysWhatIsWrongAndWhatItCosts() throws {
        let malformed = HandedDescriptor.adopt("BATON_CONTROL_FD", in: ["BATON_CONTROL_FD": "five"], at: 5)
        XCTAssertNil(malformed.fd)
        XCTAssertEqual(malformed.problem,
                       "BATON_CONTROL_FD='five' is not a descriptor number: this worker does not read the master's drain orders and drains with its own defaults")
        let misplaced = HandedDescriptor.adopt("BATON_HANDOFF_FD", in: ["BATON_HANDOFF_FD": "9"], at: 6)
        XCTAssertNil(misplaced.fd)
        XCTAssertEqual(misplaced.problem,
                       "BATON_HANDOFF_FD=9, but the protocol puts it at fd 6: this worker takes no connections handed over by the previous generation")
        // A descriptor number that is surely not open.
        let closed = HandedDescriptor.adopt("BATON_HANDOFF_FD", in: ["BATON_HANDOFF_FD": "1000000"], at: 1_000_000)
        XCTAssertNil(closed.fd)
        XCTAssertEqual(closed.problem?.hasPrefix("BATON_HANDOFF_FD=1000000 cannot be used (Bad file descriptor)"), true, closed.problem ?? "")
    }
}
