/// What the master tells a worker as it asks it to drain (sent just before SIGTERM).
///
/// Generations share their listening sockets. A draining worker that accepted what is queued on
/// a socket another generation serves would take connections only to close them again; on a
/// socket nobody else serves (an old port after a port change, the last generation at a stop) it
/// must take them, or closing the last copy resets them.
///
/// On the wire, one line: `drain shared=0,2 handoff=1 deadline=27000`. `handoff=1` says the next
/// generation's inbox is attached; `deadline=` (milliseconds) is how long the worker has to close
/// its connections before the master's SIGKILL comes close. Fields a worker does not know are
/// ignored, so new optional fields need no new protocol version.
public struct DrainOrders: Sendable, Equatable {
    /// Positions (0 = fd 3) of the listeners whose accept queue another generation, or systemd,
    /// goes on serving: leave what is queued there.
    public var sharedListeners: Set<Int>
    /// The next generation's `ConnectionInbox` (a descriptor of this process, sent along with
    /// the orders): hand idle keep-alive connections over there instead of closing them. Nil when
    /// the next generation cannot take connections; then close them gracefully.
    public var connectionInbox: Int32?
    /// How long, from the orders, the worker has to close every connection; nil from a master
    /// that did not say (an older release).
    public var deadline: Duration?

    /// Orders naming the listeners (by position) whose queue the worker must leave alone, where
    /// connections go, if anywhere, and by when the worker must be done.
    public init(sharedListeners: Set<Int>, connectionInbox: Int32? = nil, deadline: Duration? = nil) {
        self.sharedListeners = sharedListeners
        self.connectionInbox = connectionInbox
        self.deadline = deadline
    }

    /// The deadline the master gives a worker whose drain it ends with SIGKILL after
    /// `drainTimeout`: a tenth of it, at most a second, is left for the worker to exit after
    /// closing its last connection.
    public static func deadline(forDrainTimeout drainTimeout: Duration) -> Duration {
        drainTimeout - min(.seconds(1), drainTimeout / 10)
    }

    /// The protocol line.
    var line: String {
        var line = "drain shared=\(sharedListeners.sorted().map(String.init).joined(separator: ","))"
        if connectionInbox != nil { line += " handoff=1" }
        if let deadline { line += " deadline=\(max(0, deadline.milliseconds))" }
        return line + "\n"
    }

    /// Parses the last `drain` line of `text`; nil if there is none or it is malformed. With
    /// `handoff=1` in the line, `inbox` is the descriptor that came with it.
    init?(parsing text: String, inbox: Int32? = nil) {
        guard let line = text.split(separator: "\n").last(where: { $0.hasPrefix("drain ") }) else { return nil }
        var shared: Set<Int>?
        var deadline: Duration?
        for field in line.dropFirst("drain ".count).split(separator: " ") {
            if field.hasPrefix("shared=") {
                let numbers = field.dropFirst("shared=".count).split(separator: ",").map { Int($0) }
                guard numbers.allSatisfy({ ($0 ?? -1) >= 0 }) else { return nil }
                shared = Set(numbers.compactMap { $0 })
            } else if field.hasPrefix("deadline=") {
                guard let milliseconds = Int64(field.dropFirst("deadline=".count)), milliseconds >= 0 else { return nil }
                deadline = .milliseconds(milliseconds)
            }
        }
        guard let shared else { return nil }
        self.sharedListeners = shared
        self.connectionInbox = line.split(separator: " ").contains("handoff=1") ? inbox : nil
        self.deadline = deadline
    }
}
