import NIOConcurrencyHelpers

/// Tells the app code serving a connection that the connection is about to be closed by a drain
/// (a WebSocket about to get its 1001), so that it can flush what it holds or tell its client
/// first. Apps use it through ``BatonDrain/withDrainHandler(_:onDrain:)``.
public final class DrainNotice: Sendable {
    private struct State {
        var handlers: [Int: @Sendable () async -> Void] = [:]
        var nextID = 0
        var fired = false
    }

    private let state = NIOLockedValueBox(State())

    /// A notice with no handler registered and not fired; each ``ConnectionActivity`` has one.
    public init() {}

    /// Whether the drain has come for this connection.
    public var fired: Bool { state.withLockedValue { $0.fired } }

    /// Registers `handler`; nil (and nothing registered) when the drain has come already.
    func add(_ handler: @escaping @Sendable () async -> Void) -> Int? {
        state.withLockedValue { state in
            guard !state.fired else { return nil }
            defer { state.nextID += 1 }
            state.handlers[state.nextID] = handler
            return state.nextID
        }
    }

    func remove(_ id: Int) {
        state.withLockedValue { _ = $0.handlers.removeValue(forKey: id) }
    }

    /// Runs every handler registered, at once, and returns when all have returned (true when
    /// there was one: the app may have told its client). Once only.
    @discardableResult
    func fire() async -> Bool {
        let handlers = state.withLockedValue { state -> [@Sendable () async -> Void] in
            guard !state.fired else { return [] }
            state.fired = true
            defer { state.handlers = [:] }
            return Array(state.handlers.values)
        }
        await withDiscardingTaskGroup { group in
            for handler in handlers { group.addTask { await handler() } }
        }
        return !handlers.isEmpty
    }
}

/// What the app code serving a connection can learn of Baton's drain.
public enum BatonDrain {
    /// The drain notice of the connection the current task serves (set by the adapter around
    /// each connection's handling; inherited by the tasks it starts).
    @TaskLocal package static var notice: DrainNotice?

    /// Runs `operation`; if the connection it serves is drained meanwhile, runs `onDrain` first,
    /// before Baton closes the connection, for up to the adapter's hook timeout
    /// (``DrainConfiguration/webSocketHookTimeout``). Use it in a WebSocket handler to send a
    /// last message ("reconnecting: new release") or to save what the session holds:
    ///
    /// ```swift
    /// wsRouter.ws("chat") { inbound, outbound, context in
    ///     try await BatonDrain.withDrainHandler {
    ///         for try await message in inbound.messages(maxSize: 1 << 16) { ... }
    ///     } onDrain: {
    ///         try? await outbound.write(.text("server upgrading: reconnect"))
    ///     }
    /// }
    /// ```
    ///
    /// Outside a connection Baton serves, `operation` just runs.
    public static func withDrainHandler<T>(_ operation: () async throws -> T,
                                           onDrain: @escaping @Sendable () async -> Void) async rethrows -> T {
        guard let notice, let id = notice.add(onDrain) else { return try await operation() }
        defer { notice.remove(id) }
        return try await operation()
    }
}
