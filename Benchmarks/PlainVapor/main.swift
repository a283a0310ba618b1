import Foundation
import Vapor

// Benchmark baseline: vapor-hello's routes on stock Vapor, bound by Vapor itself
// (`plain-vapor serve --port N`), without Baton.
struct HelloAnswer: Content {
    let message: String
    let ver: String
    let pid: Int
}

let env = try Environment.detect()
let app = try await Application.make(env)
app.logger.logLevel = .warning
// As in vapor-hello: Vapor's default middleware minus the per-request log line.
app.middleware = Middlewares()
app.middleware.use(ErrorMiddleware.default(environment: app.environment))
app.get("hello") { _ in HelloAnswer(message: "Hello from Baton", ver: "plain", pid: Int(getpid())) }
app.on(.POST, "echo", body: .collect) { request -> Response in
    Response(status: .ok, body: .init(buffer: request.body.data ?? ByteBuffer()))
}
do {
    try await app.execute()
} catch {
    try? await app.asyncShutdown()
    throw error
}
try await app.asyncShutdown()
