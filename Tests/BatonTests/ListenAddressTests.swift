import XCTest
@testable import Baton

final class ListenAddressTests: XCTestCase {
    func testParsesTheFormsOperatorsWrite() throws {
        XCTAssertEqual(try ListenAddress(parsing: ":8080"), .tcp(host: "0.0.0.0", port: 8080))
        XCTAssertEqual(try ListenAddress(parsing: "127.0.0.1:80"), .tcp(host: "127.0.0.1", port: 80))
        XCTAssertEqual(try ListenAddress(parsing: "[::1]:8443"), .tcp(host: "::1", port: 8443))
        XCTAssertEqual(try ListenAddress(parsing: "unix:/run/app.sock"), .unix(path: "/run/app.sock"))
        XCTAssertEqual(ListenAddress.tcp(host: "::1", port: 8443).description, "[::1]:8443")
    }

    func testRejectsNonsenseWithAReason() {
        for bad in ["8080", "host:", "host:99999", "host:-1", "unix:", ":http"] {
            XCTAssertThrowsError(try ListenAddress(parsing: bad), bad) { error in
                XCTAssertTrue("\(error)".contains("invalid listen address '\(bad)'"), "\(error)")
            }
        }
    }

    func testBindsTCPAndUnixWithTheRequestedBacklogAndCloseOnExec() throws {
        let tcp = try Listener.bind(.tcp(host: "127.0.0.1", port: 0), backlog: 2048)
        defer { tcp.close() }
        XCTAssertGreaterThan(tcp.port ?? 0, 0)
        XCTAssertEqual(fcntl(tcp.fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC)
        XCTAssertEqual(tcp.name, "127.0.0.1_0", "names may not contain ':' (LISTEN_FDNAMES separator)")

        let path = FileManager.default.temporaryDirectory.appendingPathComponent("baton-\(getpid()).sock").path
        let unix = try Listener.bind(.unix(path: path))
        defer { unix.close(); unlink(path) }
        XCTAssertNil(unix.port)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path))
    }

    func testBindingABusyPortSaysWhich() throws {
        let first = try Listener.bind(.tcp(host: "127.0.0.1", port: 0))
        defer { first.close() }
        XCTAssertThrowsError(try Listener.bind(.tcp(host: "127.0.0.1", port: first.port!))) { error in
            XCTAssertTrue("\(error)".contains("bind 127.0.0.1:\(first.port!)"), "\(error)")
            XCTAssertTrue("\(error)".contains("Address already in use"), "\(error)")
        }
    }
}
