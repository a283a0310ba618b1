/// What the master tells a worker on its control channel (`WorkerControl`) while it serves or
/// drains, beside ``DrainOrders``.
///
/// In a canary upgrade:
/// - To the serving generation: `share percent=10 handoff=1`, the canary's `ConnectionInbox`
///   attached: pass that share of the connections it accepts to the canary, and hand over that
///   share of its open keep-alive connections (at a request boundary, as in a drain). `share
///   percent=0`: stop (the canary is rolled back); connections not yet moved stay.
/// - To the canary, started with `BATON_CANARY=1` and serving only what arrives in its inbox:
///   `accept`: it is promoted, and accepts on its listeners from now on.
///
/// When a successor dies while this generation drains for it (protocol 5; the worker said
/// `BATON_RESUME=1` when ready): `resume`: stop draining, keep every connection still held, and
/// accept again. The next drain comes as ``DrainOrders`` alone, without SIGTERM: the worker's
/// graceful shutdown has begun already, and a second SIGTERM is not the application's to take.
public enum WorkerOrder: Sendable, Equatable {
    /// Pass `percent` of the traffic to the inbox that came with the order (nil with 0).
    case share(percent: Int, inbox: Int32?)
    /// Start accepting on the listeners.
    case accept
    /// Stop draining and serve again.
    case resume
    /// While draining: close the remaining connections soon (WebSockets get their 1001 within a
    /// fifth of the close window, not over all of it); too many generations are draining.
    case hurry
    /// Follow master `pid` from now on: it adopted this worker after its own master died
    /// (protocol 6). Its pidfd came with the order.
    case master(pid: Int32, pidfd: Int32)

    /// The protocol line.
    var line: String {
        switch self {
        case .share(let percent, let inbox): return "share percent=\(percent)\(inbox != nil ? " handoff=1" : "")\n"
        case .accept: return "accept\n"
        case .resume: return "resume\n"
        case .hurry: return "hurry\n"
        case .master(let pid, _): return "master pid=\(pid)\n"
        }
    }

    /// Parses one line (without its newline); nil if it is not such an order or is malformed.
    /// `descriptor` is what came with the line.
    init?(parsing line: Substring, descriptor: Int32?) {
        let fields = line.split(separator: " ")
        switch fields.first {
        case "accept" where fields.count == 1:
            self = .accept
        case "resume" where fields.count == 1:
            self = .resume
        case "hurry" where fields.count == 1:
            self = .hurry
        case "master" where fields.count == 2:
            guard fields[1].hasPrefix("pid="), let pid = Int32(fields[1].dropFirst(4)), pid > 0, let descriptor else { return nil }
            self = .master(pid: pid, pidfd: descriptor)
        case "share":
            guard let field = fields.first(where: { $0.hasPrefix("percent=") }), let percent = Int(field.dropFirst("percent=".count)),
                  (0...100).contains(percent) else { return nil }
            let handoff = fields.contains("handoff=1")
            guard percent == 0 || (handoff && descriptor != nil) else { return nil }
            self = .share(percent: percent, inbox: percent == 0 ? nil : descriptor)
        default:
            return nil
        }
    }
}
