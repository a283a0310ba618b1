#if os(Linux)
import Foundation
import Glibc

/// Why one request did not count as a success.
package enum HTTPFailure: Error, CustomStringConvertible, Sendable {
    case connect(errno: Int32)
    case write(errno: Int32)
    /// The peer closed the connection before a full response arrived.
    case eof(receivedBytes: Int)
    /// recv failed (ECONNRESET and the like).
    case read(errno: Int32)
    /// No byte within the receive timeout (SO_RCVTIMEO).
    case timeout
    case malformed(String)
    case status(Int, body: String)
    case noPid(body: String)

    package var description: String {
        switch self {
        case .connect(let e): return "connect: \(String(cString: strerror(e)))"
        case .write(let e): return "write: \(String(cString: strerror(e)))"
        case .eof(let n): return "EOF after \(n) bytes of the response"
        case .read(let e): return "read: \(String(cString: strerror(e)))"
        case .timeout: return "receive timeout"
        case .malformed(let what): return "malformed response: \(what)"
        case .status(let s, let body): return "status \(s): \(body.prefix(200))"
        case .noPid(let body): return "200 without a pid: \(body.prefix(200))"
        }
    }
}

package struct HTTPResponse: Sendable {
    package var status: Int
    package var headers: [(name: String, value: String)]
    package var body: [UInt8]
    /// The server will close the connection after this response.
    package var connectionClose: Bool

    package var bodyText: String { String(decoding: body, as: UTF8.self) }

    package func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    /// The `"pid": N` number of the JSON body.
    package var pid: pid_t? { HTTPResponse.jsonInteger(named: "pid", in: body).flatMap { pid_t(exactly: $0) } }

    /// Finds `"name" : 123` in a flat JSON object without a full JSON parse (cheap on the hot path).
    package static func jsonInteger(named name: String, in body: [UInt8]) -> Int? {
        let key = Array("\"\(name)\"".utf8)
        guard body.count > key.count else { return nil }
        var i = 0
        while i + key.count <= body.count {
            if body[i] == key[0] && Array(body[i..<(i + key.count)]) == key {
                var j = i + key.count
                while j < body.count, body[j] == UInt8(ascii: " ") || body[j] == UInt8(ascii: "\t") { j += 1 }
                guard j < body.count, body[j] == UInt8(ascii: ":") else { i += 1; continue }
                j += 1
                while j < body.count, body[j] == UInt8(ascii: " ") || body[j] == UInt8(ascii: "\t") { j += 1 }
                var value = 0
                var digits = 0
                while j < body.count, body[j] >= UInt8(ascii: "0"), body[j] <= UInt8(ascii: "9") {
                    value = value * 10 + Int(body[j] - UInt8(ascii: "0"))
                    digits += 1
                    j += 1
                }
                return digits > 0 ? value : nil
            }
            i += 1
        }
        return nil
    }
}

/// One blocking HTTP/1.1 client connection to 127.0.0.1 over a raw socket.
package final class HTTPConnection {
    package let fd: Int32
    package let port: UInt16
    private var buffer: [UInt8] = []
    private var closed = false

    /// Connects to 127.0.0.1:`port`. `timeout` bounds connect, each send and each recv.
    package init(port: UInt16, timeout: TimeInterval = 10) throws(HTTPFailure) {
        self.port = port
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .connect(errno: errno) }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1_000_000))
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        // On Linux SO_SNDTIMEO also bounds a blocking connect().
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if rc != 0 {
            let e = errno
            Glibc.close(fd)
            throw .connect(errno: e)
        }
        self.fd = fd
    }

    deinit { close() }

    package func close() {
        if !closed {
            closed = true
            Glibc.close(fd)
        }
    }

    /// Sends `GET path` and reads one full response. With `closeConnection` the request says
    /// `Connection: close`.
    package func get(_ path: String, closeConnection: Bool = false) throws(HTTPFailure) -> HTTPResponse {
        var request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUser-Agent: baton-integration-tests\r\n"
        if closeConnection { request += "Connection: close\r\n" }
        request += "\r\n"
        try send(Array(request.utf8))
        return try readResponse(closeConnection: closeConnection)
    }

    /// Sends `text` as it is (a request, or part of one).
    package func send(raw text: String) throws(HTTPFailure) {
        try send(Array(text.utf8))
    }

    /// Reads one full response to a request sent with ``send(raw:)``.
    package func readResponse() throws(HTTPFailure) -> HTTPResponse {
        try readResponse(closeConnection: false)
    }

    /// Reads until the server closes the connection (end-of-file) and returns what came after the
    /// last response read, which should be nothing. Throws `.timeout` if no end-of-file comes
    /// within the connection's timeout.
    package func readToEndOfFile() throws(HTTPFailure) -> [UInt8] {
        while try fill() {}
        defer { buffer.removeAll() }
        return buffer
    }

    private func send(_ bytes: [UInt8]) throws(HTTPFailure) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                Glibc.send(fd, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
            }
            if n < 0 {
                let e = errno
                if e == EINTR { continue }
                throw .write(errno: e)
            }
            sent += n
        }
    }

    /// Reads more bytes into the buffer; false at EOF.
    private func fill() throws(HTTPFailure) -> Bool {
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                buffer.append(contentsOf: chunk[0..<n])
                return true
            }
            if n == 0 { return false }
            let e = errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { throw .timeout }
            throw .read(errno: e)
        }
    }

    private func readResponse(closeConnection: Bool) throws(HTTPFailure) -> HTTPResponse {
        // Head: up to the blank line.
        var searchFrom = 0
        var headEnd: Int? = nil
        while headEnd == nil {
            if buffer.count >= 4 {
                var i = max(0, searchFrom - 3)
                while i + 3 < buffer.count {
                    if buffer[i] == 13 && buffer[i + 1] == 10 && buffer[i + 2] == 13 && buffer[i + 3] == 10 {
                        headEnd = i
                        break
                    }
                    i += 1
                }
                searchFrom = buffer.count
            }
            if headEnd != nil { break }
            if buffer.count > 64 * 1024 { throw .malformed("head larger than 64 KiB") }
            guard try fill() else { throw .eof(receivedBytes: buffer.count) }
        }
        let head = String(decoding: buffer[0..<headEnd!], as: UTF8.self)
        buffer.removeFirst(headEnd! + 4)
        var lines = head.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst()
        let statusParts = statusLine.split(separator: " ", maxSplits: 2)
        guard statusParts.count >= 2, statusParts[0].hasPrefix("HTTP/1."), let status = Int(statusParts[1]) else {
            throw .malformed("status line \(statusLine.debugDescription)")
        }
        let http10 = statusParts[0] == "HTTP/1.0"
        var headers: [(name: String, value: String)] = []
        for line in lines where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else { throw .malformed("header line \(line.debugDescription)") }
            headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        var contentLength: Int? = nil
        var chunked = false
        var connectionTokens: [String] = []
        for (name, value) in headers {
            switch name.lowercased() {
            case "content-length":
                guard let n = Int(value), n >= 0 else { throw .malformed("content-length \(value)") }
                contentLength = n
            case "transfer-encoding":
                chunked = value.lowercased().contains("chunked")
            case "connection":
                connectionTokens += value.lowercased().split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            default:
                break
            }
        }
        let connectionClose = connectionTokens.contains("close") || (http10 && !connectionTokens.contains("keep-alive"))

        var body: [UInt8] = []
        if status == 204 || status == 304 || (100...199).contains(status) {
            // no body
        } else if chunked {
            body = try readChunkedBody()
        } else if let length = contentLength {
            while buffer.count < length {
                guard try fill() else { throw .eof(receivedBytes: buffer.count) }
            }
            body = Array(buffer[0..<length])
            buffer.removeFirst(length)
        } else {
            // Delimited by EOF: only valid when the connection closes.
            guard connectionClose || closeConnection else {
                throw .malformed("no Content-Length on a keep-alive response")
            }
            while try fill() {}
            body = buffer
            buffer.removeAll()
        }
        return HTTPResponse(status: status, headers: headers, body: body, connectionClose: connectionClose)
    }

    private func readLine() throws(HTTPFailure) -> String {
        while true {
            if let i = buffer.firstIndex(of: 10) {
                let line = String(decoding: buffer[0..<i], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                buffer.removeFirst(i + 1)
                return line
            }
            guard try fill() else { throw .eof(receivedBytes: buffer.count) }
        }
    }

    private func readChunkedBody() throws(HTTPFailure) -> [UInt8] {
        var body: [UInt8] = []
        while true {
            let sizeLine = try readLine()
            let sizeText = sizeLine.split(separator: ";").first.map(String.init) ?? ""
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16) else {
                throw .malformed("chunk size \(sizeLine.debugDescription)")
            }
            if size == 0 {
                // Trailers up to the empty line.
                while try !readLine().isEmpty {}
                return body
            }
            while buffer.count < size + 2 {
                guard try fill() else { throw .eof(receivedBytes: buffer.count) }
            }
            body.append(contentsOf: buffer[0..<size])
            buffer.removeFirst(size + 2)
        }
    }
}

/// One `GET path` on a fresh connection that asks for `Connection: close`.
package func httpGetOnce(port: UInt16, path: String = "/hello", timeout: TimeInterval = 10) -> Result<HTTPResponse, HTTPFailure> {
    do throws(HTTPFailure) {
        let connection = try HTTPConnection(port: port, timeout: timeout)
        defer { connection.close() }
        return .success(try connection.get(path, closeConnection: true))
    } catch {
        return .failure(error)
    }
}
#endif
