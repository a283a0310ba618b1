import Baton
@preconcurrency import Dispatch
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Accepts connections on an inherited listener and hands each to NIO.
///
/// Accepting happens here rather than in a NIO server channel because the listening socket is
/// shared with the other generation: both are woken for each new connection and one of them
/// finds nothing to accept. NIO's server channel treats that wake-up as impossible (an assertion
/// in debug builds); for this loop it is the normal case. Once ``stop(takeQueued:)`` returns nothing more is
/// accepted; connections that arrive later wait in the kernel's queue for the next generation.
///
/// `@unchecked Sendable`: `accept` runs on the source's serial queue, and once more in ``stop(takeQueued:)``
/// after the source's cancellation has completed, never twice at once.
final class Acceptor: @unchecked Sendable {
    private let listener: Listener
    private let source: any DispatchSourceRead
    private let stopped = NIOLockedValueBox<CheckedContinuation<Void, Never>?>(nil)

    private let accept: () -> Void

    /// Starts accepting; each connection goes to `adopter`.
    init(listener: Listener, index: Int, adopter: ConnectionAdopter, logger: Logger) throws {
        try listener.makeNonBlocking()
        self.listener = listener
        // Accepts until the queue is empty (EAGAIN).
        let accept: () -> Void = {
            while true {
                let connection: Int32?
                do {
                    connection = try listener.acceptConnection()
                } catch {
                    logger.warning("\(error)")  // e.g. EMFILE: try again at the next wake-up
                    return
                }
                guard let connection else { return }
                adopter.adopt(connection, listener: index)
            }
        }
        self.accept = accept
        let source = DispatchSource.makeReadSource(fileDescriptor: listener.fd, queue: DispatchQueue(label: "baton.accept.\(listener.name)"))
        self.source = source
        source.setEventHandler(handler: accept)
        let stopped = self.stopped
        source.setCancelHandler {
            stopped.withLockedValue { $0 }?.resume()
        }
        source.resume()
    }

    /// Stops accepting and returns once no accept can happen any more. Closes this process's copy
    /// of the listener (never `shutdown(2)`: the socket lives on in the other generation).
    ///
    /// With `takeQueued`, what is already in the kernel's queue is accepted first, to be served
    /// (with `Connection: close`) rather than reset: when no other generation listens there (an
    /// old port after a port change, the last generation at a stop), closing the last copy of the
    /// socket resets every connection still queued on it. Where another generation serves the
    /// socket, leave the queue to it (`takeQueued: false`): connections taken now would only be
    /// served once and closed, and a client that has not sent its request yet could not be told
    /// apart from an idle one.
    func stop(takeQueued: Bool) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            stopped.withLockedValue { $0 = continuation }
            source.cancel()
        }
        if takeQueued { accept() }
        listener.close()
    }
}
