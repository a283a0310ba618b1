#if os(Linux)
import Foundation
import Glibc

/// What a test helper throws when the thing under test or the test's own machinery fails.
package struct TestError: Error, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }
}

/// Paths of the things the tests run.
package enum Locations {
    /// The repository root, found from this file's path (Tests/BatonTestSupport/…).
    package static let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Examples/python-worker/app.py (BATON_TEST_PYTHON_WORKER names another, e.g. a patched copy).
    package static var pythonWorker: URL {
        if let other = ProcessInfo.processInfo.environment["BATON_TEST_PYTHON_WORKER"], !other.isEmpty {
            return URL(fileURLWithPath: other)
        }
        return repositoryRoot.appendingPathComponent("Examples/python-worker/app.py")
    }

    /// An executable product built beside the test bundle (`.build/debug/NAME`): `hello`, `baton`,
    /// `vapor-hello`. BATON_HELLO_BINARY names another `hello`.
    package static func product(_ name: String) throws -> String {
        var candidates: [String] = []
        if name == "hello", let explicit = ProcessInfo.processInfo.environment["BATON_HELLO_BINARY"] {
            candidates.append(explicit)
        }
        // On Linux the test bundle is an executable in the products directory.
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            candidates.append(URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent(name).path)
        }
        candidates.append(Bundle.main.bundleURL.appendingPathComponent(name).path)
        for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
            candidates.append(bundle.bundleURL.deletingLastPathComponent().appendingPathComponent(name).path)
        }
        candidates.append(repositoryRoot.appendingPathComponent(".build/debug/\(name)").path)
        for candidate in candidates where FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        throw TestError("\(name) not found beside the test bundle (looked at \(candidates)); build it with `swift build --build-tests`"
                        + (name == "hello" ? " or set BATON_HELLO_BINARY" : ""))
    }

    /// python3: the system one when present (no pyenv shim in the way), else the first in PATH.
    package static func python() throws -> String {
        try executable("python3", preferring: ["/usr/bin/python3"])
    }

    /// `name` from `preferring` or PATH, nil when absent.
    package static func find(_ name: String, preferring: [String] = []) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        let candidates = preferring + path.split(separator: ":").map { "\($0)/\(name)" } + ["/usr/bin/\(name)", "/bin/\(name)"]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    package static func executable(_ name: String, preferring: [String] = []) throws -> String {
        guard let found = find(name, preferring: preferring) else { throw TestError("\(name) not found in PATH") }
        return found
    }
}

/// The environment for a process under test: the test's own, less whatever would make it think a
/// service manager or a Baton master started it, plus `extra`.
package func cleanEnvironment(_ extra: [String: String] = [:]) -> [String: String] {
    var environment = ProcessInfo.processInfo.environment.filter { name, _ in
        !name.hasPrefix("LISTEN_") && !name.hasPrefix("BATON_") && !name.hasPrefix("WATCHDOG_")
            && !["NOTIFY_SOCKET", "RUNTIME_DIRECTORY", "INVOCATION_ID"].contains(name)
    }
    for (name, value) in extra { environment[name] = value }
    return environment
}

/// Reserves a free TCP port on 127.0.0.1 (bind to port 0, read it, close).
package func freePort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw TestError("socket: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard ok else { throw TestError("bind: \(String(cString: strerror(errno)))") }
    return UInt16(bigEndian: address.sin_port)
}
#endif
