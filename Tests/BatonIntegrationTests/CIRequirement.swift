import Foundation
import XCTest

/// A test that cannot run here (a tool, root or a kernel feature is missing) skips itself with the
/// reason — except in CI (`CI=true`, as `.ci/run` and most CI services set it), where the same
/// reason fails the test: a green CI run must not hide a test that never ran. `.ci/run` installs
/// every tool the tests need, so a failure here names what its install missed.
///
///     guard let tool = Locations.find("wrk") else { throw skipOrFail("wrk is not installed (Debian package wrk)") }
func skipOrFail(_ why: String, file: StaticString = #filePath, line: UInt = #line) -> Error {
    if isCI {
        return CIRequirementMissing(message: "CI=true: this test would be skipped, which CI does not allow: \(why)")
    }
    return XCTSkip(why, file: file, line: line)
}

/// `CI` is `true` (or `1`) in the environment.
var isCI: Bool {
    let value = ProcessInfo.processInfo.environment["CI"]?.lowercased() ?? ""
    return value == "true" || value == "1"
}

/// Thrown instead of `XCTSkip` in CI: XCTest reports it as a failure with this message.
struct CIRequirementMissing: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}
