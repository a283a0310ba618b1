#if DEBUG
@testable import BatonNIO
import NIOCore
import NIOEmbedded
import NIOHTTP1
#if canImport(Glibc)
import Glibc
#endif

extension FuzzTargets {
    /// The HTTP request boundary rule (`ConnectionActivity.atRequestBoundary`): whether every byte
    /// a connection read belonged to a request read in full, so that it can go to the next
    /// generation with nothing lost.
    static let requestBoundary = FuzzTarget(
        name: "request-boundary",
        summary: "a pipelined stream of valid requests the input describes, read in the pieces it picks (or, for inputs starting below 0x40, raw bytes) → ConnectionSocketHandler + HTTPRequestDecoder + ConnectionDrainHandler: at a boundary only where a request ends, always after a request without a body; raw bytes never crash",
        check: checkRequestBoundary)

    /// A descriptor makes the handler track boundaries; the channel never uses it.
    private static let descriptor: Int32 = {
        var pair: [Int32] = [-1, -1]
        return socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 ? pair[0] : -1
    }()

    static func checkRequestBoundary(_ bytes: [UInt8]) -> [String] {
        var findings = Findings()
        var source = ByteSource(bytes)
        let raw = source.next() < 0x40
        // The stream and where each request ends (and whether it has a body).
        var stream: [UInt8] = []
        var ends: [Int: Bool] = [:]
        if raw {
            stream = Array(bytes.dropFirst())
        } else {
            for _ in 0..<(1 + source.next(below: 4)) {
                let hasBody = appendRequest(to: &stream, from: &source)
                ends[stream.count] = hasBody
            }
        }
        guard descriptor >= 0 else { return ["no socket pair"] }
        let socket = ConnectionSocketHandler(fd: descriptor)
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        do {
            try channel.pipeline.syncOperations.addHandler(socket, name: ConnectionSocketHandler.name)
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(HTTPRequestDecoder()))
            try channel.pipeline.syncOperations.addHandler(ConnectionDrainHandler())
        } catch {
            return ["pipeline: \(error)"]
        }
        var offset = 0
        while offset < stream.count {
            // Pieces of 1…256 bytes while the input lasts (a read may hold a request's end and
            // the next one's head), then the rest at once.
            let length = source.isEmpty ? stream.count - offset : 1 + Int(source.next())
            let start = offset
            let end = min(stream.count, offset + length)
            do {
                try channel.writeInbound(ByteBuffer(bytes: stream[offset..<end]))
                while try channel.readInbound(as: HTTPServerRequestPart.self) != nil {}
            } catch {
                // Only raw bytes may be refused by the decoder.
                findings.expect(raw, "valid requests refused at byte \(end): \(error)")
                return findings.broken
            }
            offset = end
            if raw { continue }
            let boundary = socket.activity.atRequestBoundary
            findings.expect(!boundary || ends[offset] != nil,
                            "at a request boundary after byte \(offset), inside a request (ends at \(ends.keys.sorted()))")
            // The rule sees a head's end (CR LF CR LF) only whole in one read; split, it says
            // "maybe not" and the connection waits for its next request: slower, never wrong.
            if ends[offset] == false, end - start >= 4 {
                findings.expect(boundary, "not at a boundary after byte \(offset), where a request without a body ends")
            }
        }
        return findings.broken
    }

    /// Appends one valid request the input describes; returns whether it has a body. Bodies are
    /// made of bytes that also end heads and chunks (CR, LF), which a rule by bytes could mistake.
    private static func appendRequest(to stream: inout [UInt8], from source: inout ByteSource) -> Bool {
        let alphabet: [UInt8] = Array("\r\n\r\nGET x0".utf8)
        func body(_ count: Int, _ source: inout ByteSource) -> [UInt8] {
            (0..<count).map { _ in alphabet[source.next(below: alphabet.count)] }
        }
        switch source.next(below: 4) {
        case 0:
            stream += Array("GET /a HTTP/1.1\r\nHost: a\r\n\r\n".utf8)
            return false
        case 1:
            stream += Array("GET /b?\(source.next()) HTTP/1.1\r\nHost: b\r\nAccept: */*\r\n\r\n".utf8)
            return false
        case 2:
            let content = body(source.next(below: 12), &source)
            stream += Array("POST /c HTTP/1.1\r\nHost: c\r\nContent-Length: \(content.count)\r\n\r\n".utf8) + content
            return !content.isEmpty
        default:
            stream += Array("POST /d HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
            for _ in 0..<source.next(below: 3) {
                let chunk = body(1 + source.next(below: 6), &source)
                stream += Array("\(String(chunk.count, radix: 16))\r\n".utf8) + chunk + Array("\r\n".utf8)
            }
            stream += Array("0\r\n\r\n".utf8)
            return true
        }
    }
}
#endif
