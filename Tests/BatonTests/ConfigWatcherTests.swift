import Foundation
import NIOConcurrencyHelpers
import XCTest
@testable import Baton

/// Every way a deploy changes watch.conf leads to exactly one change notification.
final class ConfigWatcherTests: XCTestCase {
    private var folder: String!
    private var path: String { folder + "/watch.conf" }
    private let changes = NIOLockedValueBox(0)
    private var watcher: ConfigWatcher?

    override func setUpWithError() throws {
        folder = NSTemporaryDirectory() + "baton-watch-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try write("{}")
        let changes = self.changes
        watcher = try ConfigWatcher(path: path, quietPeriod: { .milliseconds(300) }) { changes.withLockedValue { $0 += 1 } }
    }

    override func tearDown() {
        watcher?.stop()
        try? FileManager.default.removeItem(atPath: folder)
    }

    private func write(_ text: String, to file: String? = nil) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: file ?? path))  // not atomic: an in-place write
    }

    /// Waits past the quiet period and returns how many notifications came.
    private func settledCount() -> Int {
        usleep(900_000)
        return changes.withLockedValue { $0 }
    }

    func testInPlaceWrite() throws {
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: path))
        handle.truncateFile(atOffset: 0)
        handle.write(Data("{\"a\":".utf8))  // two writes, as editors and `echo >` do
        handle.write(Data("1}".utf8))
        handle.closeFile()
        XCTAssertEqual(settledCount(), 1)
    }

    func testWriteToTemporaryNameThenRename() throws {
        try write("{}", to: folder + "/.watch.conf.tmp")
        XCTAssertEqual(rename(folder + "/.watch.conf.tmp", path), 0)
        XCTAssertEqual(settledCount(), 1)
    }

    func testDeleteThenRecreate() throws {
        XCTAssertEqual(unlink(path), 0)
        usleep(50_000)
        try write("{}")
        XCTAssertEqual(settledCount(), 1)
    }

    func testTouch() throws {
        let touch = Process()
        touch.executableURL = URL(fileURLWithPath: "/usr/bin/touch")
        touch.arguments = [path]
        try touch.run()
        touch.waitUntilExit()
        XCTAssertEqual(settledCount(), 1)
    }

    func testAHundredWritesInOneSecondAreOneChange() throws {
        for index in 0..<100 {
            try write("{\"n\": \(index)}")
            usleep(2_000)
        }
        XCTAssertEqual(settledCount(), 1)
    }

    func testOtherFilesInTheFolderAreIgnored() throws {
        try write("x", to: folder + "/app")
        try write("x", to: folder + "/watch.conf.bak")
        XCTAssertEqual(settledCount(), 0)
    }

    /// An upgrade that reads the file during the quiet period absorbs the change; a later change
    /// still triggers.
    func testAbsorbedChangeDoesNotTriggerButALaterOneDoes() throws {
        try write(#"{"Ver":"2"}"#)
        XCTAssertTrue(try XCTUnwrap(watcher).absorbPendingChanges(), "the write should count as pending")
        XCTAssertEqual(settledCount(), 0, "an absorbed change must not trigger")
        XCTAssertFalse(try XCTUnwrap(watcher).absorbPendingChanges(), "nothing pending any more")
        try write(#"{"Ver":"3"}"#)
        XCTAssertEqual(settledCount(), 1, "a change after the absorption triggers")
    }

    func testTwoEditsFarApartAreTwoChanges() throws {
        try write("{}")
        XCTAssertEqual(settledCount(), 1)
        try write("{}")
        XCTAssertEqual(settledCount(), 2)
    }
}
