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

    /// An age or a writtenAt near Int64's ends trapped the next image adopting the record.
    func testCorruptAgesInAMasterRecordDoNotTrap() {
        var record = MasterRecord(
            writtenAt: Int64.min, image: .init(path: "/app", arguments: [], executions: 1, processAge: Int64.max),
            listeners: [], currentListeners: [], notify: .init(fd: 10, path: "@n"), control: nil, generations: [],
            nextNumber: 1, currentPlan: nil, previousPlan: nil, consecutiveFailures: 0, lastUpgrade: nil)
        for writtenAt in [Int64.min, 0, MasterRecord.bootTime(), Int64.max] {
            record.writtenAt = writtenAt
            for age in [Int64.min, -1, 0, Int64.max / 2, Int64.max] {
                let age = MasterRecord.age(record.instant(age: age), now: .now)  // the next record's age
                XCTAssertGreaterThanOrEqual(age, 0)
            }
        }
        record.writtenAt = MasterRecord.bootTime()
        XCTAssertEqual(Double(MasterRecord.age(record.instant(age: 5_000_000_000), now: .now)), 5e9, accuracy: 1e9, "a sound age is kept")
    }

    /// Addresses whose description did not parse back to them (the record carries descriptions):
    /// stray brackets, a combining mark that hid a "[" from a Character comparison, and the host
    /// "unix", written as "unix:8", a unix socket path.
    func testListenAddressesParseBackFromTheirDescription() throws {
        for text in ["[[x]]:80", "\u{33B}l:6[%:]:0", "[::1:80", "a]:80"] {
            XCTAssertThrowsError(try ListenAddress(parsing: text), text) { error in
                XCTAssertTrue("\(error)".contains("brackets"), "\(error)")
            }
        }
        for text in ["[::1]:8080", "x\u{33B}:80", "[\u{33B}::1]:80", "unix:\u{301}/a", ":0", "[unix]:8"] {
            let address = try ListenAddress(parsing: text)
            XCTAssertEqual(try ListenAddress(parsing: address.description), address, text)
        }
    }

}
