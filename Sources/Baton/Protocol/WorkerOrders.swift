/// What the master tells the two generations of a canary upgrade on their control channels
/// (``WorkerControl``), beside ``DrainOrders``.
///
/// - To the serving generation: `share percent=10 handoff=1`, the canary's ``ConnectionInbox``
///   attached: pass that share of the connections it accepts to the canary, and hand over that
///   share of its open keep-alive connections (at a request boundary, as in a drain). `share
///   percent=0`: stop (the canary is rolled back); connections not yet moved stay.
/// - To the canary, started with `BATON_CANARY=1` and serving only what arrives in its inbox:
///   `accept`: it is promoted, and accepts on its listeners from now on.
public enum CanaryOrder: Sendable, Equatable {
    /// Pass `percent` of the traffic to the inbox that came with the order (nil with 0).
    case share(percent: Int, inbox: Int32?)
    /// Start accepting on the listeners.
    case accept

    /// The protocol line.
    var line: String {
        switch self {
        case .share(let percent, let inbox): return "share percent=\(percent)\(inbox != nil ? " handoff=1" : "")\n"
        case .accept: return "accept\n"
        }
    }

    /// Parses one line (without its newline); nil if it is not a canary order or is malformed.
    /// `descriptor` is what came with the line.
    init?(parsing line: Substring, descriptor: Int32?) {
        let fields = line.split(separator: " ")
        switch fields.first {
        case "accept" where fields.count == 1:
            self = .accept
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
