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
/// in debug builds); for this loop it is the normal case. Once ``stop()`` returns nothing more is
/// accepted; connections that arrive later wait in the kernel's queue for the next generation.
///
/// `@unchecked Sendable`: `accept` runs on the source's serial queue, and once more in ``stop()``
/// after the source's cancellation has completed, never twice at once.
final class Acceptor: @unchecked Sendable {
    private let listener: Listener
    private let source: any DispatchSourceRead
    private let stopped = NIOLockedValueBox<CheckedContinuation<Void, Never>?>(nil)

    private let accept: () -> Void

    /// Starts accepting; each connection is set up with `bootstrap` and registered in `registry`.
    init(listener: Listener, bootstrap: ClientBootstrap, registry: ConnectionRegistry, logger: Logger) throws {
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
                registry.willAccept()
                bootstrap.withConnectedSocket(connection).whenComplete { result in
                    switch result {
                    case .success(let channel): registry.accepted(channel)
                    case .failure(let error):
                        logger.debug("connection setup failed: \(error)")
                        registry.acceptFailed()
                    }
                }
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
    /// What is already in the kernel's queue is accepted first, to be served (with `Connection:
    /// close`) rather than reset: after a port change no other generation listens there, and
    /// closing the last copy of a socket resets every connection still queued on it. On a shared
    /// port this takes a few connections the next generation would have taken: harmless.
    func stop() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            stopped.withLockedValue { $0 = continuation }
            source.cancel()
        }
        accept()
        listener.close()
    }
}
