import XCTest
@testable import Baton

final class PathNameTests: XCTestCase {
    func testSplitsLikeDirnameAndBasename() {
        XCTAssertTrue(PathName.split("/srv/app/watch.conf") == ("/srv/app", "watch.conf"))
        XCTAssertTrue(PathName.split("watch.conf") == (".", "watch.conf"))
        XCTAssertTrue(PathName.split("/watch.conf") == ("/", "watch.conf"))
        XCTAssertTrue(PathName.split("app/watch.conf") == ("app", "watch.conf"))
        XCTAssertEqual(PathName.folder(of: "/run/app/.baton/control.sock"), "/run/app/.baton")
    }
}
