import XCTest
@testable import Baton

/// The parser bugs the fuzzers found (Fuzz/README.md, "Findings"), one test each; their inputs
/// are also in Fuzz/corpus/<target>/regression-*.
final class FuzzFindingsTests: XCTestCase {
    /// "\r\n" is one Character in Swift: split by Character, the datagram below had one field and
    /// the worker was not ready. systemd splits at each "\n" byte.
    func testNotifyMessageSplitsAtEveryNewlineByte() {
        let message = NotifyMessage(parsing: "STATUS=x\r\nREADY=1")
        XCTAssertTrue(message.isReady)
        XCTAssertEqual(message.status, "x\r")
        XCTAssertEqual(NotifyMessage(parsing: "A=\u{301}1").fields.map(\.key), ["A"], "= with a combining mark after it")
    }
}
