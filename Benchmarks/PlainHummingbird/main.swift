// The same /hello as `hello`, served by stock Hummingbird (Application, binding its own port), with
// no Baton at all: the baseline for what Baton's master and HTTP adapter cost in steady state.
// Used by Benchmarks/run.sh (steady state: what Baton costs against stock Hummingbird).
//
//   plain-hummingbird PORT [--websocket]
//
// --websocket serves through `.http1WebSocketUpgrade` with a `/ws` echo, the server builder
// `hello` uses, whose per-connection set-up costs more than `.http1()`'s: the baseline of the
// same pipeline.
import Foundation
import Hummingbird
import HummingbirdWebSocket

struct Answer: ResponseEncodable {
    let message: String
    let ver: String
    let pid: Int
}

let port = Int(CommandLine.arguments.dropFirst().first ?? "") ?? 8080
let router = Router()
router.get("hello") { _, _ in Answer(message: "Hello from Hummingbird", ver: "plain", pid: Int(getpid())) }
let configuration = ApplicationConfiguration(address: .hostname("127.0.0.1", port: port))
if CommandLine.arguments.dropFirst(2).contains("--websocket") {
    let webSocketRouter = Router(context: BasicWebSocketRequestContext.self)
    webSocketRouter.ws("ws") { inbound, outbound, _ in
        for try await message in inbound.messages(maxSize: 1 << 16) {
            switch message {
            case .text(let text): try await outbound.write(.text(text))
            case .binary(let bytes): try await outbound.write(.binary(bytes))
            }
        }
    }
    let app = Application(router: router, server: .http1WebSocketUpgrade(webSocketRouter: webSocketRouter), configuration: configuration)
    try await app.runService()
} else {
    let app = Application(router: router, configuration: configuration)
    try await app.runService()
}
