#if os(Linux)
import Foundation
import Glibc
import XCTest

/// The release build that deploys upload, `swift build -c release --static-swift-stdlib`, runs
/// on a server without the Swift toolchain: `hello` and `baton` start, serve and upgrade inside a
/// private mount namespace where the toolchain folder is an empty tmpfs, and the ordinary debug
/// build is shown to fail there (`libswift….so` not found), so the namespace really hides it.
///
/// The static binaries are built once per test run into `.build-static/` (a scratch path of its
/// own: `swift test` holds the lock of `.build`), or taken from `BATON_STATIC_BIN_DIR` when set
/// (a folder holding `hello` and `baton`, e.g. `dist/` of `Packaging/build.sh`). Needs root (for
/// `unshare -m` and `mount`); skipped with the reason otherwise.
final class StaticBinaryTests: OperationTestCase {
    /// Where the toolchain is (the folder whose `usr/lib/swift/linux/libswiftCore.so` the debug
    /// build loads), and the namespace wrapper that hides it.
    private var toolchain = ""
    private var unshare = ""

    override func setUpWithError() throws {
        try super.setUpWithError()
        guard geteuid() == 0 else { throw skipOrFail("StaticBinaryTests need root (unshare -m, mount -t tmpfs); CI runs as root") }
        guard let unshare = Locations.find("unshare") else { throw skipOrFail("unshare (util-linux) is not installed") }
        self.unshare = unshare
        let probe = try runCommand(unshare, ["-m", "--propagation", "private", "/bin/sh", "-c", "mount -t tmpfs none /mnt && exit 0"],
                                   directory: directory, timeout: 30)
        guard probe.exitCode == 0 else {
            throw skipOrFail("a private mount namespace is not permitted here (unshare -m; mount -t tmpfs): \(probe)")
        }
        toolchain = try Self.toolchainFolder(of: try Locations.product("hello"), workingDirectory: directory)
    }

    /// argv that runs `command` in a new mount namespace where `toolchain` is an empty tmpfs.
    private func hidden(_ command: [String]) -> [String] {
        ["-m", "--propagation", "private", "/bin/sh", "-c", #"mount -t tmpfs none "$0" && exec "$@""#, toolchain] + command
    }

    /// The debug build needs the toolchain: in the namespace it does not even start. Without this
    /// the other tests would prove nothing.
    func testTheNamespaceHidesTheToolchainFromTheDefaultBuild() throws {
        let debugHello = try Locations.product("hello")
        let result = try runCommand(unshare, hidden([debugHello, "--help"]), directory: directory, timeout: 60)
        XCTAssertNotEqual(result.exitCode, 0, "the debug hello started without the toolchain: \(result)")
        // (a debug build misses libswiftSwiftOnoneSupport.so first, a release build libswiftCore.so)
        XCTAssertTrue(result.output.contains("error while loading shared libraries: libswift"), "\(result)")
        let listing = try runCommand(unshare, hidden(["/bin/ls", "-A", toolchain]), directory: directory, timeout: 30)
        XCTAssertEqual(listing.exitCode, 0, "\(listing)")
        XCTAssertEqual(listing.output.trimmingCharacters(in: .whitespacesAndNewlines), "", "\(toolchain) is not empty in the namespace")
    }

    /// Static `hello` without the toolchain: no Swift library is loaded from anywhere, it serves,
    /// one SIGHUP upgrades it (a new worker pid serves, the master's stays), and it stops cleanly.
    func testStaticHelloServesAndUpgradesWithoutTheToolchain() throws {
        let binaries = try StaticBuild.binaries()
        let ldd = try runCommand("/usr/bin/ldd", [binaries.hello], directory: directory, timeout: 30)
        XCTAssertFalse(ldd.output.contains("libswift"), "the static hello links Swift libraries dynamically: \(ldd.output)")
        XCTAssertFalse(ldd.output.contains("libFoundation"), ldd.output)
        XCTAssertFalse(ldd.output.contains("libdispatch"), ldd.output)

        let folder = "\(directory)/app"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: binaries.hello, toPath: "\(folder)/hello")
        let port = try freePort()
        let master = try start(unshare, hidden(["./hello", "--port", String(port), "--drain-timeout", "10"]), in: folder,
                               logName: "static-hello.log")
        let first = try waitUntilServing(port: port, master: master).pid!
        try assertInHiddenNamespace(master.pid)
        try assertInHiddenNamespace(first)

        master.signal(SIGHUP)
        guard let second = waitForNewPid(port: port, master: master, old: first) else {
            return XCTFail("no new worker served within 20 s of SIGHUP")
        }
        XCTAssertEqual(Proc.stat(second)?.ppid, master.pid, "the new worker is not the master's child")
        try assertInHiddenNamespace(second)
        XCTAssertTrue(master.waitForLog("ready in", moreThan: 1, timeout: 10), "no second 'ready in' line")
        XCTAssertTrue(poll(timeout: 20) { !Proc.isAlive(first) }, "the old worker \(first) did not drain and exit")

        master.signal(SIGTERM)
        XCTAssertEqual(master.waitForExit(timeout: 30), .exited(0))
    }

    /// Static `baton` without the toolchain: `--version`, and `baton run` supervising the static
    /// hello as its worker, upgraded once by `baton reload` (itself run in such a namespace).
    func testStaticBatonRunsAndReloadsWithoutTheToolchain() throws {
        let binaries = try StaticBuild.binaries()
        let version = try runCommand(unshare, hidden([binaries.baton, "--version"]), directory: directory, timeout: 60)
        XCTAssertEqual(version.exitCode, 0, "\(version)")
        let expected = try runCommand(try Locations.product("baton"), ["--version"], directory: directory, timeout: 60)
        XCTAssertEqual(version.output.trimmingCharacters(in: .whitespacesAndNewlines),
                       expected.output.trimmingCharacters(in: .whitespacesAndNewlines))
        XCTAssertFalse(version.output.isEmpty)

        let port = try freePort()
        let master = try start(unshare, hidden([binaries.baton, "run", "--listen", "127.0.0.1:\(port)", "--drain-timeout", "10",
                                                "--", binaries.hello]), logName: "static-baton.log")
        let first = try waitUntilServing(port: port, master: master).pid!
        try assertInHiddenNamespace(master.pid)
        try assertInHiddenNamespace(first)

        let reload = try runCommand(unshare, hidden([binaries.baton, "reload", "--timeout", "30"]), directory: directory, timeout: 60)
        XCTAssertEqual(reload.exitCode, 0, "\(reload)")
        XCTAssertTrue(reload.output.contains("generation 2"), reload.output)
        guard let second = waitForNewPid(port: port, master: master, old: first) else {
            return XCTFail("no new worker served after baton reload")
        }
        try assertInHiddenNamespace(second)

        // (SIGTERM, not `baton stop`: a master with nothing to drain can exit before it has written
        // its answer to `stop`, and `baton stop` then says "closed the connection without an answer";
        // seen with these fast release binaries, not a matter of static linking.)
        master.signal(SIGTERM)
        XCTAssertEqual(master.waitForExit(timeout: 30), .exited(0))
    }

    /// `pid` sees an empty toolchain folder and has no Swift library mapped from anywhere.
    private func assertInHiddenNamespace(_ pid: pid_t, file: StaticString = #filePath, line: UInt = #line) throws {
        let seen = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/root\(toolchain)")) ?? ["<unreadable>"]
        XCTAssertEqual(seen, [], "pid \(pid) sees \(toolchain) with \(seen)", file: file, line: line)
        let maps = (try? String(contentsOfFile: "/proc/\(pid)/maps", encoding: .utf8)) ?? ""
        XCTAssertFalse(maps.isEmpty, "cannot read /proc/\(pid)/maps", file: file, line: line)
        let swiftLibraries = maps.split(separator: "\n").filter { $0.contains("libswift") || $0.contains("libFoundation") || $0.contains("libdispatch") }
        XCTAssertEqual(swiftLibraries, [], "pid \(pid) maps Swift libraries", file: file, line: line)
    }

    /// The toolchain root of a binary linked against the toolchain's libswiftCore.so:
    /// `<root>/usr/lib/swift/linux/libswiftCore.so` in its `ldd` output.
    static func toolchainFolder(of binary: String, workingDirectory: String) throws -> String {
        let ldd = try runCommand("/usr/bin/ldd", [binary], directory: workingDirectory, timeout: 30)
        guard let line = ldd.output.split(separator: "\n").first(where: { $0.contains("libswiftCore.so =>") }),
              let path = line.split(separator: " ").first(where: { $0.hasPrefix("/") && $0.hasSuffix("libswiftCore.so") }) else {
            throw OperationError("libswiftCore.so not found in ldd \(binary):\n\(ldd.output)")
        }
        var root = URL(fileURLWithPath: String(path)).resolvingSymlinksInPath()
        for _ in 0..<5 { root.deleteLastPathComponent() }  // libswiftCore.so, linux, swift, lib, usr
        let folder = root.path
        guard folder != "/", FileManager.default.fileExists(atPath: "\(folder)/usr/bin") else {
            throw OperationError("cannot tell the toolchain folder from \(path)")
        }
        return folder
    }
}

/// `swift build -c release --static-swift-stdlib` of `hello` and `baton` (Packaging/swift-build-static.sh),
/// once per test process.
enum StaticBuild {
    struct Binaries {
        var hello: String
        var baton: String
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var result: Result<Binaries, OperationError>?

    /// How long the build may take (a fresh clone on a loaded 2-core machine: see README).
    static let timeout: TimeInterval = 1200

    static func binaries() throws -> Binaries {
        lock.lock()
        defer { lock.unlock() }
        if result == nil { result = Result { try build() }.mapError { ($0 as? OperationError) ?? OperationError("\($0)") } }
        return try result!.get()
    }

    private static func build() throws -> Binaries {
        if let folder = ProcessInfo.processInfo.environment["BATON_STATIC_BIN_DIR"], !folder.isEmpty {
            let binaries = Binaries(hello: "\(folder)/hello", baton: "\(folder)/baton")
            for path in [binaries.hello, binaries.baton] where !FileManager.default.isExecutableFile(atPath: path) {
                throw OperationError("BATON_STATIC_BIN_DIR=\(folder) has no executable \(path)")
            }
            return binaries
        }
        let root = Locations.repositoryRoot.path
        let script = "\(root)/Packaging/swift-build-static.sh"
        let started = Date()
        // `swift build -c release --static-swift-stdlib --scratch-path .build-static`, product by
        // product, as Packaging/build.sh builds what it ships; prints the binaries' folder last.
        // (run from the temp folder, where runCommand keeps its output file; the script cds to the root)
        let build = try runCommand("/bin/bash", [script, "hello", "baton"], directory: FileManager.default.temporaryDirectory.path,
                                   environment: ProcessInfo.processInfo.environment, timeout: timeout)
        guard build.exitCode == 0 else {
            throw OperationError("bash Packaging/swift-build-static.sh hello baton failed (\(build.status)):\n\(build.output.suffix(6000))")
        }
        print("StaticBuild: bash Packaging/swift-build-static.sh hello baton took \(Int(Date().timeIntervalSince(started))) s")
        let folder = build.output.split(separator: "\n").last.map { String($0).trimmingCharacters(in: .whitespaces) } ?? ""
        let binaries = Binaries(hello: "\(folder)/hello", baton: "\(folder)/baton")
        for path in [binaries.hello, binaries.baton] where !FileManager.default.isExecutableFile(atPath: path) {
            throw OperationError("the static build did not produce \(path):\n\(build.output.suffix(3000))")
        }
        return binaries
    }
}
#endif
