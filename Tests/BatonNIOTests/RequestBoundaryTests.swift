import NIOCore
import NIOEmbedded
import NIOHTTP1
import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import BatonNIO

/// When a connection may go to another process: only when every byte read so far belonged to a
/// request read in full, so the HTTP decoder holds nothing of the next one.
final class RequestBoundaryTests: XCTestCase {
    private var channel: EmbeddedChannel!
    private var socket: ConnectionSocketHandler!

    private var pair: [Int32] = [-1, -1]

    override func setUpWithError() throws {
        // A descriptor makes the handler track boundaries; the channel never uses it.
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

    func testNothingReadYetIsABoundary() {
        XCTAssertTrue(socket.activity.atRequestBoundary)
    }

    func testCompleteRequestWithoutBody() throws {
        XCTAssertTrue(try read("GET /hello HTTP/1.1\r\nHost: a\r\n\r\n"))
    }

    func testHalfARequestIsNot() throws {
        XCTAssertFalse(try read("GET /hello HTTP/1.1\r\nHo"))
        XCTAssertTrue(try read("st: a\r\n\r\n"), "completed by the next read")
    }

    func testARequestFollowedByPartOfTheNextIsNot() throws {
        XCTAssertFalse(try read("GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHo"))
    }

    func testBodyEndingTheReadIs() throws {
        XCTAssertFalse(try read("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n01234"), "body not complete")
        XCTAssertTrue(try read("56789"), "the read ends exactly with the body")
    }

    func testBodyFollowedByPartOfTheNextRequestIsNot() throws {
        XCTAssertFalse(try read("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nxyGET / HTTP/1.1\r\n"))
    }

    func testBodyFollowedByBytesThatRepeatItsEndIsNot() throws {
        // The bytes read end with "GE" as the body does, but the body is not what ends them: the
        // start of a next request (GET) is.
        XCTAssertFalse(try read("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nGEGE"))
    }

    func testCompleteRequestWithBodyInOneRead() throws {
        // The body is a slice of the bytes read, so its end is theirs.
        XCTAssertTrue(try read("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"))
    }

    // What the request-boundary fuzzer found (Fuzz/README.md): a read that ended one request and
    // went on into the next counted as a boundary when its bytes ended with CR LF CR LF, which the
    // next request's head (with a body to come) or its body can end with too.

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
