@testable import BatonHummingbird
import HummingbirdCore
import HummingbirdHTTP2
import XCTest

/// `HTTPServerBuilder.childChannel(responder:)` reads the child channel out of Hummingbird's
/// builders by reflection: if a Hummingbird release moves it, these fail here rather than in a
/// worker.
final class ServerBuildersTests: XCTestCase {
    private let respond: HTTPChannelHandler.Responder = { _, _, _ in }

    func testHTTP1BuilderGivesItsHTTP1Channel() throws {
        let child = try HTTPServerBuilder.http1().childChannel(responder: respond)
        XCTAssertTrue(child is HTTP1Channel, "got \(type(of: child))")
    }

    func testPlaintextHTTP2BuilderGivesItsHTTP2Channel() throws {
        let child = try HTTPServerBuilder.plaintextHTTP2(configuration: .init(idleTimeout: .seconds(7))).childChannel(responder: respond)
        let http2 = try XCTUnwrap(child as? HTTP2Channel, "got \(type(of: child))")
        XCTAssertEqual(http2.configuration.idleTimeout, .seconds(7), "the builder's own configuration comes with it")
    }

    func testABuilderOfItsOwnGivesWhatItBuilds() throws {
        let builder = HTTPServerBuilder { responder in HTTP1Channel(responder: responder, configuration: .init(idleTimeout: .seconds(3))) }
        let child = try XCTUnwrap(try builder.childChannel(responder: respond) as? HTTP1Channel)
        XCTAssertEqual(child.configuration.idleTimeout, .seconds(3))
    }
}
