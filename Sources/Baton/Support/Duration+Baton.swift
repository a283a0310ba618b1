/// The `Duration` conversions Baton's targets share (`Duration.components` is seconds plus
/// attoseconds; logs and timers want whole milliseconds or nanoseconds).
extension Duration {
    /// Whole milliseconds, for logs and `poll(2)` timeouts.
    package var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    /// Whole nanoseconds, for timers that count in them (Dispatch, NIO's `TimeAmount`).
    package var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }

    /// "250 ms" or "30 s", for logs.
    package var shortDescription: String {
        let ms = milliseconds
        return ms % 1000 == 0 && ms >= 1000 ? "\(ms / 1000) s" : "\(ms) ms"
    }
}
