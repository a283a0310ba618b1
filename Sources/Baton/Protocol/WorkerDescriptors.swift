/// Where a worker finds what the master passed it: the one place both sides take the layout from.
///
/// - fd 3 … 3+n−1: the listeners, in order (`LISTEN_FDS=n`, systemd's convention);
/// - fd 3+n: the worker's end of its ``WorkerControl`` channel (`BATON_CONTROL_FD`);
/// - fd 4+n: the receiving end of its ``ConnectionInbox`` (`BATON_HANDOFF_FD`, protocol 3).
///
/// The two Baton descriptors are not counted in `LISTEN_FDS`, so a socket-activated program in
/// any language sees only its listeners.
package struct WorkerDescriptors: Sendable, Equatable {
    /// The first listener's descriptor (`SD_LISTEN_FDS_START`).
    package static let firstListener: Int32 = 3

    /// How many listeners the worker gets.
    package let listenerCount: Int

    /// The layout for a worker given `listenerCount` listeners.
    package init(listenerCount: Int) { self.listenerCount = listenerCount }

    /// The worker's end of its control channel.
    package var control: Int32 { Self.firstListener + Int32(listenerCount) }
    /// The receiving end of its connection inbox.
    package var inbox: Int32 { control + 1 }

    /// The master's descriptors in the order the child must get them (from fd 3 on).
    func order(listeners: [Int32], control: Int32, inbox: Int32) -> [Int32] {
        precondition(listeners.count == listenerCount, "a layout for \(listenerCount) listeners was given \(listeners.count)")
        return listeners + [control, inbox]
    }
}
