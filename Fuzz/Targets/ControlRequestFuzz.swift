#if DEBUG
@testable import Baton
import NIOCore
import NIOEmbedded
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension FuzzTargets {
    /// What a client writes to the master's control socket: framed by `ControlRequestDecoder`,
    /// then decoded as a `ControlProtocol.Request` as `ControlServer` does.
    static let controlRequest = FuzzTarget(
        name: "control-request",
        summary: "control socket bytes (fed whole, and in pieces the input picks) → ControlRequestDecoder → Request JSON: one frame per connection, the same for any split, as the framing rule says; a canary request applies without a crash",
        check: checkControlRequest)

    static func checkControlRequest(_ bytes: [UInt8]) -> [String] {
        var findings = Findings()
        // The split: pieces of 1…64 bytes, sized by the first byte (the framing must not care).
        let piece = 1 + Int(bytes.first ?? 0) % 64
        let whole = frames(of: bytes, piece: bytes.count, findings: &findings)
        let split = frames(of: bytes, piece: piece, findings: &findings)
        let expected = expectedFrame(bytes)
        findings.expect(whole.count <= 1 && split.count <= 1, "more than one frame: \(whole), \(split)")
        findings.expect(whole == split, "the split into \(piece)-byte pieces changes the frame: \(whole) vs \(split)")
        // Nothing at all is no request: the server then answers nothing, which is fine too.
        findings.expect(whole == [expected] || (bytes.isEmpty && whole.isEmpty), "frame \(whole), expected \(expected)")

        guard case .line(let line)? = whole.first else { return findings.broken }
        if let request = try? JSONDecoder().decode(ControlProtocol.Request.self, from: Data(line)) {
            // What the master does with a canary request before judging it usable.
            if let canary = request.canary {
                let settings = canary.applied(to: nil)
                _ = settings.problem
                _ = settings.summary
            }
            // The answer goes back as one line.
            let answer = ControlProtocol.encode(ControlProtocol.Response(ok: false, message: "unknown command '\(request.command)'"))
            findings.expect(answer.last == 0x0A && answer.dropLast().firstIndex(of: 0x0A) == nil, "the answer is not one line")
        }
        // The client side reads the master's answer with the same decoder: any line is safe there too.
        _ = try? JSONDecoder().decode(ControlProtocol.Response.self, from: Data(line))
        return findings.broken
    }

    /// The frame the rule in `ControlRequestDecoder`'s documentation gives: the line before the
    /// first newline if it is at most `maxRequestBytes` long, else `tooLong`; no newline at all:
    /// `truncated`, or `tooLong` past the limit.
    static func expectedFrame(_ bytes: [UInt8]) -> Frame {
        let limit = ControlProtocol.maxRequestBytes
        if let newline = bytes.firstIndex(of: 0x0A) { return newline <= limit ? .line(Array(bytes[..<newline])) : .tooLong }
        return bytes.count > limit ? .tooLong : .truncated
    }

    enum Frame: Equatable, CustomStringConvertible {
        case line([UInt8]), tooLong, truncated
        var description: String {
            switch self {
            case .line(let bytes): return "line(\(bytes.count) bytes)"
            case .tooLong: return "tooLong"
            case .truncated: return "truncated"
            }
        }
    }

    /// The frames the decoder passes on for `bytes` written in pieces of `piece` bytes, then EOF.
    static func frames(of bytes: [UInt8], piece: Int, findings: inout Findings) -> [Frame] {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(ControlRequestDecoder()))
        var frames: [Frame] = []
        func collect() throws {
            while let frame = try channel.readInbound(as: ControlRequestDecoder.Frame.self) {
                switch frame {
                case .line(let buffer): frames.append(.line(Array(buffer.readableBytesView)))
                case .tooLong: frames.append(.tooLong)
                case .truncated: frames.append(.truncated)
                }
            }
        }
        do {
            var start = 0
            while start < bytes.count {
                let end = min(bytes.count, start + max(1, piece))
                try channel.writeInbound(ByteBuffer(bytes: bytes[start..<end]))
                try collect()
                start = end
            }
            // The client closes: what is buffered is decoded as the last frame.
            try channel.close().wait()
            try collect()
            _ = try channel.finish(acceptAlreadyClosed: true)
        } catch {
            findings.expect(false, "the decoder failed: \(error)")
        }
        return frames
    }
}
#endif
