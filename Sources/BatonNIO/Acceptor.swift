import Baton
import CBaton
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// Accepts connections on an inherited listener and hands them to NIO.
///
/// Accepting happens here rather than in a NIO server channel because the listening socket is
/// shared with the other generation: both are woken for each new connection and one of them
/// finds nothing to accept. NIO's server channel treats that wake-up as impossible (an assertion
/// in debug builds); for this loop it is the normal case. Once ``stop(takeQueued:)`` returns nothing more is
/// accepted; connections that arrive later wait in the kernel's queue for the next generation.
///
/// The accepting runs on a thread of its own (`poll` on the listener, then `accept4` until
/// EAGAIN), handing each batch to the event loops at once. That thread runs under SCHED_BATCH:
/// its wake-ups do not preempt a busy event loop. With a normal policy each new connection woke it
/// and cut into an event loop's work right away (a wake-up and two context switches per one or
/// two connections, ~10% of a core under `Connection: close` load); as a batch thread it runs
/// when a CPU is free or at the next scheduler tick, with the connections that arrived meanwhile,
/// which is what NIO's own server channel gets by accepting between its other events. On a
/// machine with an idle core it still runs at once.
///
/// `@unchecked Sendable`: `accept` runs on the accept thread, and once more in ``stop(takeQueued:)``
/// after that thread has ended, never twice at once.
final class Acceptor: @unchecked Sendable {
    private struct State {
        var ended = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let listener: Listener
    /// Written by ``stop(takeQueued:)`` to end the accept thread.
    private let wake: Int32
    private let state = NIOLockedValueBox(State())
    private let accept: () -> Void

    /// Starts accepting; each connection goes to `adopter`.
    init(listener: Listener, index: Int, adopter: ConnectionAdopter, logger: Logger) throws {
        try listener.makeNonBlocking()
        let wake = baton_eventfd()
        guard wake >= 0 else { throw BatonError.system("eventfd", errno) }
        self.listener = listener
        self.wake = wake
        // Accepts until the queue is empty (EAGAIN); returns false after an error.
        let acceptBatch: () -> Bool = {
            var batch: [Int32] = []
            defer { if !batch.isEmpty { adopter.adoptAccepted(batch, listener: index) } }
            while true {
                do {
                    guard let connection = try listener.acceptConnection() else { return true }
                    batch.append(connection)
                } catch {
                    logger.warning("\(error)")  // e.g. EMFILE: try again a little later
                    return false
                }
            }
        }
        self.accept = { _ = acceptBatch() }
        let state = self.state
        do {
            try Self.startThread {
                _ = baton_set_thread_name("baton-accept")
                _ = baton_sched_batch()  // best effort: without it, accepting preempts the event loops
                var fds = [pollfd(fd: listener.fd, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: wake, events: Int16(POLLIN), revents: 0)]
                while true {
                    let ready = poll(&fds, nfds_t(fds.count), -1)
                    if ready < 0 {
                        if errno == EINTR { continue }
                        logger.error("accept on \(listener.name) stopped: poll: \(String(cString: strerror(errno)))")
                        break
                    }
                    if fds[1].revents != 0 { break }  // stop()
                    if fds[0].revents & Int16(POLLNVAL) != 0 {
                        logger.error("accept on \(listener.name) stopped: the listener is not open")
                        break
                    }
                    // The listener stays readable while the error lasts: don't spin on it.
                    if fds[0].revents != 0, !acceptBatch() { usleep(10_000) }
                }
                let waiter = state.withLockedValue { state in
                    state.ended = true
                    defer { state.waiter = nil }
                    return state.waiter
                }
                waiter?.resume()
            }
        } catch {
            close(wake)
            throw error
        }
    }

    /// Stops accepting and returns once no accept can happen any more. Closes this process's copy
    /// of the listener (never `shutdown(2)`: the socket lives on in the other generation) unless
    /// it is to be `kept` for a drain that may be called off (then accepting starts again on it).
    ///
    /// With `takeQueued`, what is already in the kernel's queue is accepted first, to be served
    /// (with `Connection: close`) rather than reset: when no other generation listens there (an
    /// old port after a port change, the last generation at a stop), closing the last copy of the
    /// socket resets every connection still queued on it. Where another generation serves the
    /// socket, leave the queue to it (`takeQueued: false`): connections taken now would only be
    /// served once and closed, and a client that has not sent its request yet could not be told
    /// apart from an idle one.
    func stop(takeQueued: Bool, keepListener kept: Bool = false) async {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { write(wake, $0.baseAddress, $0.count) }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ended = state.withLockedValue { state -> Bool in
                if !state.ended { state.waiter = continuation }
                return state.ended
            }
            if ended { continuation.resume() }
        }
        if takeQueued { accept() }
        if !kept { listener.close() }
        close(wake)
    }

    private final class ThreadBody {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    /// Runs `body` on a new detached thread that blocks every signal (they are the business of
    /// the threads that wait for them).
    private static func startThread(_ body: @escaping () -> Void) throws {
        var all = sigset_t()
        var previous = sigset_t()
        sigfillset(&all)
        pthread_sigmask(SIG_SETMASK, &all, &previous)  // the new thread inherits this mask
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        let context = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { context in
            let body = Unmanaged<ThreadBody>.fromOpaque(context!).takeRetainedValue()
            body.run()
            return nil
        }, context)
        guard result == 0 else {
            Unmanaged<ThreadBody>.fromOpaque(context).release()
            throw BatonError.system("pthread_create", result)
        }
        pthread_detach(thread)
    }
}
