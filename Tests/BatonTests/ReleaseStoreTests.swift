import Crypto
import Foundation
import XCTest
@testable import Baton

final class ReleaseStoreTests: XCTestCase {
    private var app: String!
    private var store: ReleaseStore!
    private let trueBinary = try! [UInt8](Data(contentsOf: URL(fileURLWithPath: "/bin/true")))

    override func setUpWithError() throws {
        app = NSTemporaryDirectory() + "baton-store-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: app, withIntermediateDirectories: true)
        store = try ReleaseStore(appFolder: app)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: app)
    }

    private func put(_ name: String, _ bytes: [UInt8], mode: Int = 0o755) {
        XCTAssertTrue(FileManager.default.createFile(atPath: "\(app!)/\(name)", contents: Data(bytes)))
        XCTAssertEqual(chmod("\(app!)/\(name)", mode_t(mode)), 0)
    }

    private func assertRefused(_ name: String, _ fragment: String, sha: String? = nil, line: UInt = #line) {
        XCTAssertThrowsError(try store.stage(binName: name, version: "2", expectedSHA256: sha), line: line) { error in
            XCTAssertTrue("\(error)".contains(fragment), "\(error)", line: line)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: store.root) && !(try! FileManager.default.contentsOfDirectory(atPath: store.root)).isEmpty,
                       "a refused binary leaves nothing in the store", line: line)
    }

    func testStagesACopyWithMode0755AndItsHash() throws {
        put("app", trueBinary)
        let release = try store.stage(binName: "app", version: "2")
        XCTAssertTrue(release.path.hasPrefix(store.root + "/2-"))
        XCTAssertTrue(release.path.hasSuffix("/app"))
        XCTAssertEqual(try [UInt8](Data(contentsOf: URL(fileURLWithPath: release.path))), trueBinary)
        let mode = try FileManager.default.attributesOfItem(atPath: release.path)[.posixPermissions] as? Int
        XCTAssertEqual(mode, 0o755)
        XCTAssertEqual(release.sha256.count, 64)
        XCTAssertTrue(release.path.contains("2-\(release.sha256.prefix(12))/"))
        // Staging the same thing again reuses the release.
        XCTAssertEqual(try store.stage(binName: "app", version: "2", expectedSHA256: release.sha256.uppercased()), release)
        // The operator may now overwrite the original in place.
        put("app", Array("#!/bin/sh\nexit 0\n".utf8))
    }

    func testABinaryOfSeveralMegabytesIsReadAndCopiedWhole() throws {
        // Larger than the 1 MB the store reads and writes per call, and not a multiple of it.
        var big = trueBinary + [UInt8](repeating: 0, count: 3 * ReleaseStore.ioChunk + 12_345)
        for index in stride(from: trueBinary.count, to: big.count, by: 4093) { big[index] = UInt8(truncatingIfNeeded: index) }
        put("app", big)
        let release = try store.stage(binName: "app", version: "3")
        XCTAssertEqual(try [UInt8](Data(contentsOf: URL(fileURLWithPath: release.path))), big)
        let expected = SHA256.hash(data: big).map { String(format: "%02x", $0) }.joined()
        XCTAssertEqual(release.sha256, expected)
    }

    func testScriptsAreAccepted() throws {
        put("run.sh", Array("#!/bin/sh\nexec true\n".utf8))
        XCTAssertNoThrow(try store.stage(binName: "run.sh", version: "1"))
    }

    func testRefusesHalfUploadedBinaries() {
        put("app", Array(trueBinary.prefix(trueBinary.count / 2)))
        assertRefused("app", "is truncated")
        put("app", Array(trueBinary.prefix(40)))
        assertRefused("app", "shorter than an ELF header")
    }

    func testRefusesWhatIsNotAnExecutable() throws {
        put("app", Array("hello".utf8))
        assertRefused("app", "neither an ELF executable nor a #! script")
        put("plain", trueBinary, mode: 0o644)
        assertRefused("plain", "is not executable (mode 644)")
        try FileManager.default.createDirectory(atPath: app + "/dir", withIntermediateDirectories: true)
        assertRefused("dir", "is not a regular file")
        assertRefused("missing", "BinName cannot be found")
    }

    func testRefusesWritableByOthersUnlessAllowed() throws {
        put("app", trueBinary, mode: 0o775)
        assertRefused("app", "writable by group or others (mode 775)")
        put("app2", trueBinary, mode: 0o757)
        assertRefused("app2", "chmod go-w")
        store.allowInsecurePermissions = true
        XCTAssertNoThrow(try store.stage(binName: "app", version: "2"))
    }

    func testRefusesPathsOutsideTheAppFolder() throws {
        assertRefused("../app", "inside the app folder")
        assertRefused("/bin/true", "inside the app folder")
        XCTAssertEqual(symlink("/bin/true", app + "/link"), 0)
        assertRefused("link", "outside the app folder")
    }

    func testChecksTheExpectedHash() {
        put("app", trueBinary)
        assertRefused("app", "watch.conf expects 00ff", sha: "00ff")
    }

    func testPruneKeepsTheNewestAndThoseInUse() throws {
        put("app", trueBinary)
        var releases: [ReleaseStore.Release] = []
        for version in 1...7 {
            put("app", trueBinary + Array("\(version)".utf8))  // trailing bytes: a different hash
            releases.append(try store.stage(binName: "app", version: "\(version)"))
            usleep(20_000)
        }
        store.keep = 3
        let removed = store.prune(inUse: [releases[0].path])
        XCTAssertEqual(removed.count, 3)
        for (index, release) in releases.enumerated() {
            let kept = index == 0 || index >= 4
            XCTAssertEqual(FileManager.default.fileExists(atPath: release.path), kept, "release \(index + 1)")
        }
    }
}
