import Logging
import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import Baton

/// Log lines for systemd's journal: a priority prefix, no timestamp, one line each.
final class JournalLogHandlerTests: XCTestCase {
    func testLineCarriesThePriorityAndNoTimestamp() {
        let line = JournalLogHandler.line(level: .error, label: "hello", message: "upgrade failed: boom",
                                          metadata: ["role": "master", "pid": "12"], source: "Baton")
        XCTAssertEqual(line, "<3>hello: pid=12 role=master [Baton] upgrade failed: boom")
    }

    func testPriorities() {
        XCTAssertEqual([Logger.Level.trace, .debug, .info, .notice, .warning, .error, .critical].map(JournalLogHandler.priority),
                       [7, 7, 6, 5, 4, 3, 2])
    }

    func testAMultiLineMessageStaysOneJournalLine() {
        let line = JournalLogHandler.line(level: .warning, label: "baton", message: "first\nsecond", metadata: [:], source: "Baton")
        XCTAssertEqual(line, "<4>baton: [Baton] first second")
    }

    func testJournalIsDetectedOnlyWhenJournalStreamNamesStandardError() {
        var info = stat()
        XCTAssertEqual(fstat(STDERR_FILENO, &info), 0)
        let mine = "\(info.st_dev):\(info.st_ino)"
        XCTAssertTrue(JournalLogHandler.standardErrorIsJournal(environment: ["JOURNAL_STREAM": mine]))
        XCTAssertFalse(JournalLogHandler.standardErrorIsJournal(environment: ["JOURNAL_STREAM": "\(info.st_dev):\(info.st_ino + 1)"]),
                       "inherited from a parent whose stderr was another stream")
        XCTAssertFalse(JournalLogHandler.standardErrorIsJournal(environment: ["JOURNAL_STREAM": "garbage"]))
        XCTAssertFalse(JournalLogHandler.standardErrorIsJournal(environment: [:]))
    }
}
