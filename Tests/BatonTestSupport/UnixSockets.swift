#if os(Linux)
import Foundation
import Glibc

/// CLOCK_MONOTONIC in microseconds, as `MONOTONIC_USEC=` carries it.
package func monotonicMicroseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
}

/// Fills a `sockaddr_un` for `path` ('@' first: the abstract namespace) and calls `body` with it.
package func withUnixAddress<T>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) throws -> T {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    var bytes = Array(path.utf8)
    if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
    let capacity = MemoryLayout.size(ofValue: address.sun_path)
    guard bytes.count < capacity else { throw TestError("unix socket path too long: \(path)") }
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (index, byte) in bytes.enumerated() { raw[index] = byte }
    }
    let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (bytes.first == 0 ? 0 : 1))
    return withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) } }
}

/// A stand-in for systemd's notify socket: a datagram socket the test reads sd_notify messages from.
package final class NotifyListener {
    package let path: String
    private let fd: Int32

    package init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestError("socket: \(String(cString: strerror(errno)))") }
        self.path = path
        let rc = try withUnixAddress(path) { bind(fd, $0, $1) }
        guard rc == 0 else {
            let error = errno
            close(fd)
            throw TestError("bind \(path): \(String(cString: strerror(error)))")
        }
    }

    deinit {
        close(fd)
        if !path.hasPrefix("@") { unlink(path) }
    }

    /// The next datagram, or nil when none comes within `timeout`.
    package func next(timeout: TimeInterval) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let left = deadline.timeIntervalSinceNow
            if left <= 0 { return nil }
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = Glibc.poll(&descriptor, 1, Int32(max(1, left * 1000)))
            if ready < 0 && errno == EINTR { continue }
            if ready <= 0 { continue }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if count > 0 { return String(decoding: buffer[0..<count], as: UTF8.self) }
        }
    }
}

/// Sends one raw line to a unix stream socket and reads one line back (bounded).
package func unixRoundTrip(path: String, send line: String, timeout: TimeInterval = 10) throws -> String {
    try unixRoundTrip(path: path, sendBytes: Array(line.utf8), timeout: timeout)
}

/// Sends `bytes` (a send the server stops reading may fail when `halfClose`: the answer is what
/// counts), optionally half-closes, and reads one line back (bounded).
package func unixRoundTrip(path: String, sendBytes bytes: [UInt8], halfClose: Bool = false, timeout: TimeInterval = 10) throws -> String {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw TestError("socket: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    guard try withUnixAddress(path, { connect(fd, $0, $1) }) == 0 else {
        throw TestError("connect \(path): \(String(cString: strerror(errno)))")
    }
    var sent = 0
    while sent < bytes.count {
        let count = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, min($0.count, 1 << 16), Int32(MSG_NOSIGNAL)) }
        if count > 0 { sent += count; continue }
        if halfClose { break }
        throw TestError("send: \(String(cString: strerror(errno)))")
    }
    if halfClose { shutdown(fd, Int32(SHUT_WR)) }
    var received: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while !received.contains(10) {
        let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if count > 0 { received += chunk[0..<count]; continue }
        if count < 0 && errno == EINTR { continue }
        if count < 0 { throw TestError("recv: \(String(cString: strerror(errno))) after \(received.count) bytes") }
        break  // EOF
    }
    return String(decoding: received, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}

/// The key/value fields of an sd_notify datagram.
package func notifyFields(_ message: String) -> [String: String] {
    var fields: [String: String] = [:]
    for line in message.split(separator: "\n") {
        guard let equals = line.firstIndex(of: "=") else { continue }
        fields[String(line[..<equals])] = String(line[line.index(after: equals)...])
    }
    return fields
}
#endif
