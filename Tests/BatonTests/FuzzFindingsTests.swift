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

    /// Bucket counts that wrap around Int passed the "no more than requests" check (summed with
    /// &+), and the master's quantile trapped adding them: a worker could crash its master.
    func testStatsWhoseBucketCountsOverflowAreRefused() {
        XCTAssertNil(RequestStats(wire: "r=9223372036854775807 e=0 h=1:9223372036854775807,2:9223372036854775807"))
        let stats = RequestStats(wire: "r=9223372036854775807 e=0 h=1:9223372036854775807")
        XCTAssertNotNil(stats?.quantile(0.99))
    }
}
