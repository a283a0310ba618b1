import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import Baton

/// What tells an adopting master that watch.conf changed while no master ran.
final class ConfigStampTests: XCTestCase {
    private var path = ""

    override func setUpWithError() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("baton-stamp-\(UUID().uuidString.prefix(8)).conf").path
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(#"{"Ver":"1"}"#.utf8)))
    }

    override func tearDown() {
        unlink(path)
        unlink(path + ".new")
    }

    func testAnUntouchedFileKeepsItsStamp() throws {
        XCTAssertEqual(try XCTUnwrap(ConfigStamp(path: path)), ConfigStamp(path: path))
    }

    func testTouchEditAndRenameEachChangeIt() throws {
        // The kernel's file clock is coarse (a few ms): each change comes later than that.
        var stamp = try XCTUnwrap(ConfigStamp(path: path))
        func changed(_ what: String) throws {
            let now = try XCTUnwrap(ConfigStamp(path: path), what)
            XCTAssertNotEqual(now, stamp, "\(what) left the stamp as it was")
            stamp = now
        }
        usleep(20_000)
        XCTAssertEqual(utimes(path, nil), 0)
        try changed("touch")
        usleep(20_000)
        try Data(#"{"Ver":"2"}"#.utf8).write(to: URL(fileURLWithPath: path))
        try changed("an edit in place")
        XCTAssertTrue(FileManager.default.createFile(atPath: path + ".new", contents: Data(#"{"Ver":"2"}"#.utf8)))
        XCTAssertEqual(rename(path + ".new", path), 0)
        try changed("a rename over it")
    }

    func testAMissingFileHasNoStamp() {
        unlink(path)
        XCTAssertNil(ConfigStamp(path: path))
    }

    func testItReadsBackAndSaysWhatItIs() throws {
        let stamp = ConfigStamp(device: 1, inode: 2, size: 3, modified: 4_005_000_000)
        XCTAssertEqual(try JSONDecoder().decode(ConfigStamp.self, from: JSONEncoder().encode(stamp)), stamp)
        XCTAssertEqual(stamp.description, "inode 2, 3 bytes, modified at 4.005")
    }
}
