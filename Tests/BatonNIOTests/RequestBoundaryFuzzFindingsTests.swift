import NIOCore
import NIOEmbedded
import NIOHTTP1
import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import BatonNIO

/// What the request-boundary fuzzer found (Fuzz/README.md): a read that ended one request and
/// went on into the next counted as a boundary when its bytes ended with CR LF CR LF, which the
/// next request's head (with a body to come) or its body can end with too.
final class RequestBoundaryFuzzFindingsTests: XCTestCase {
    private var channel: EmbeddedChannel!
    private var socket: ConnectionSocketHandler!
    private var pair: [Int32] = [-1, -1]

    override func setUpWithError() throws {
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair), 0)
        socket = ConnectionSocketHandler(fd: pair[0])
        channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(socket, name: ConnectionSocketHandler.name)
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(HTTPRequestDecoder()))
        try channel.pipeline.syncOperations.addHandler(ConnectionDrainHandler())
    }

    override func tearDown() {
        _ = try? channel.finish(acceptAlreadyClosed: true)
        for fd in pair { close(fd) }
    }

    private func read(_ text: String) throws -> Bool {
        try channel.writeInbound(ByteBuffer(string: text))
        while try channel.readInbound(as: HTTPServerRequestPart.self) != nil {}
        return socket.activity.atRequestBoundary
    }

    func testARequestThenTheHeadOfOneWithABodyIsNot() throws {
        XCTAssertFalse(try read("GET /a HTTP/1.1\r\nHost: a\r\n\r\nPOST /c HTTP/1.1\r\nHost: c\r\nContent-Length: 3\r\n\r\n"))
        XCTAssertTrue(try read("abc"), "the body ends the next read exactly")
    }

    func testARequestThenPartOfABodyEndingLikeAHeadIsNot() throws {
        XCTAssertFalse(try read("GET /a HTTP/1.1\r\nHost: a\r\n\r\nPOST /c HTTP/1.1\r\nHost: c\r\nContent-Length: 6\r\n\r\n\r\n\r\n"))
    }

    func testARequestThenPartOfAChunkedBodyIsNot() throws {
        XCTAssertFalse(try read("GET /a HTTP/1.1\r\nHost: a\r\n\r\nPOST /d HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n\r\n\r\n"))
        XCTAssertTrue(try read("0\r\n\r\n"))
    }
}
