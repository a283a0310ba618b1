// The same /hello as `hello`, served by stock Hummingbird (Application, binding its own port), with
// no Baton at all: the baseline for what Baton's master and HTTP adapter cost in steady state.
// Used by Benchmarks/run.sh (steady state: what Baton costs against stock Hummingbird).
import Foundation
import Hummingbird

struct Answer: ResponseEncodable {
    let message: String
    let ver: String
    let pid: Int
}

let port = Int(CommandLine.arguments.dropFirst().first ?? "") ?? 8080
let router = Router()
router.get("hello") { _, _ in Answer(message: "Hello from Hummingbird", ver: "plain", pid: Int(getpid())) }
let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)))
try await app.runService()
