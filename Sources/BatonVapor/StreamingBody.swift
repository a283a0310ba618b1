import Vapor

/// The producer of a streaming `Response.Body`, which Vapor 4 keeps in an internal enum
/// (`Response.Body.storage`: `.stream(BodyStream)` / `.asyncStream(AsyncBodyStream)`, both
/// internal types too): public API gives a stream's bytes only all at once (`collect(on:)`). To
/// write a stream as it is produced, its callback is read through reflection.
///
/// `Mirror` finds the enum case and its payload (`struct { let count: Int; let callback: … }`).
/// The payload is then reinterpreted as a public struct of the same fields
/// (`StreamPayload`, `AsyncStreamPayload`) rather than taking `callback` out of the mirror and casting it from `Any`:
/// that cast compiles and succeeds, but calling an *async* closure cast back from `Any` crashes
/// (Swift 6.3, seen in a 20-line program too, debug and release).
///
/// Checked against Vapor 4.122.3. If a later Vapor stores the body differently (other case
/// names, fields or sizes), `init` returns nil and ``VaporHTTPHandler`` falls back to
/// `collect(on:)` (buffered, logged once): a response is never lost, only no longer streamed.
enum StreamingBody: Sendable {
    case callback(@Sendable (any BodyStreamWriter) -> Void)
    case async(@Sendable (any AsyncBodyStreamWriter) async throws -> Void)

    /// The layout of Vapor's internal `Response.BodyStream`. Not generic: a closure in a generic
    /// field is stored at another abstraction level than in Vapor's concrete one.
    private struct StreamPayload {
        let count: Int
        let callback: @Sendable (any BodyStreamWriter) -> Void
    }

    /// The layout of Vapor's internal `Response.AsyncBodyStream`.
    private struct AsyncStreamPayload {
        let count: Int
        let callback: @Sendable (any AsyncBodyStreamWriter) async throws -> Void
    }

    init?(_ body: Response.Body) {
        guard let storage = Mirror(reflecting: body).children.first(where: { $0.label == "storage" })?.value,
              let payload = Mirror(reflecting: storage).children.first
        else { return nil }
        let fields = Mirror(reflecting: payload.value).children
        guard fields.map(\.label) == ["count", "callback"], fields.first?.value is Int else { return nil }
        switch payload.label {
        case "stream":
            guard let payload = Self.reinterpret(payload.value, as: StreamPayload.self)
            else { return nil }
            self = .callback(payload.callback)
        case "asyncStream":
            guard let payload = Self.reinterpret(payload.value, as: AsyncStreamPayload.self)
            else { return nil }
            self = .async(payload.callback)
        default:
            return nil
        }
    }

    private static func reinterpret<Target>(_ value: Any, as target: Target.Type) -> Target? {
        func open<Source>(_ value: Source) -> Target? {
            guard MemoryLayout<Source>.size == MemoryLayout<Target>.size,
                  MemoryLayout<Source>.alignment == MemoryLayout<Target>.alignment else { return nil }
            return unsafeBitCast(value, to: Target.self)
        }
        return _openExistential(value, do: open)
    }
}
