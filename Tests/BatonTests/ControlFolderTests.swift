import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import Baton

/// Which folders the control socket may live in.
final class ControlFolderTests: XCTestCase {
    private var root = ""

    override func setUpWithError() throws {
        var template = Array("/tmp/baton-control-folder.XXXXXX".utf8CString)
        root = try XCTUnwrap(template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }.map { String(cString: $0) })
    }

    override func tearDown() {
        _ = try? FileManager.default.removeItem(atPath: root)
    }

    func testOwnFolderIsAcceptedAndClosedToOthers() throws {
        let folder = root + "/own"
        XCTAssertEqual(mkdir(folder, 0o777), 0)
        chmod(folder, 0o777)
        try ControlServer.checkFolder(folder)
        var info = stat()
        XCTAssertEqual(stat(folder, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o700, "no one else may write")
    }

    func testALinkOwnedByThisUserToItsFolderIsFollowed() throws {
        // As systemd's RuntimeDirectoryPreserve= with DynamicUser= lays it out.
        XCTAssertEqual(mkdir(root + "/private", 0o700), 0)
        XCTAssertEqual(symlink(root + "/private", root + "/link"), 0)
        XCTAssertNoThrow(try ControlServer.checkFolder(root + "/link"))
    }

    func testALinkToSomeoneElsesFolderIsRefused() throws {
        // Root gives a folder away; anyone else links to root's own "/".
        var theirs = "/"
        if geteuid() == 0 {
            theirs = root + "/theirs"
            XCTAssertEqual(mkdir(theirs, 0o700), 0)
            XCTAssertEqual(chown(theirs, 65534, 65534), 0)
        }
        XCTAssertEqual(symlink(theirs, root + "/link"), 0)
        XCTAssertThrowsError(try ControlServer.checkFolder(root + "/link")) {
            XCTAssertTrue("\($0)".contains("must be a folder owned by this user"), "\($0)")
        }
    }

    func testSomeoneElsesLinkIsRefused() throws {
        try requireRoot("giving a link away (lchown)")
        XCTAssertEqual(mkdir(root + "/private", 0o700), 0)
        XCTAssertEqual(symlink(root + "/private", root + "/link"), 0)
        XCTAssertEqual(lchown(root + "/link", 65534, 65534), 0)
        XCTAssertThrowsError(try ControlServer.checkFolder(root + "/link")) {
            XCTAssertTrue("\($0)".contains("symbolic link owned by uid 65534"), "\($0)")
        }
    }

    /// Root is needed; CI runs as root, and there a missing root fails instead of skipping.
    private func requireRoot(_ why: String) throws {
        guard geteuid() != 0 else { return }
        let value = getenv("CI").map { String(cString: $0).lowercased() } ?? ""
        if value == "true" || value == "1" { XCTFail("CI=true but not root: \(why) needs it"); return }
        throw XCTSkip("\(why) needs root")
    }
}
