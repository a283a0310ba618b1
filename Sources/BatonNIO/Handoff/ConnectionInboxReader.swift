import Baton
import CBaton
@preconcurrency import Dispatch
import Logging
import NIOConcurrencyHelpers
#if canImport(Glibc)
import Glibc
#endif

/// The receiving side of a connection hand-over: reads this worker's connection inbox (see
/// `Baton.ConnectionInbox`) and serves each socket that arrives there as if it had been accepted.
/// Whatever the client sent since the previous generation's last answer waits in the socket's
/// receive queue and is read as usual.
final class ConnectionInboxReader: Sendable {
    private let source: any DispatchSourceRead
    private let received = NIOLockedValueBox(0)
    /// nil once the reading has ended; otherwise who waits for that.
    private let waiters = NIOLockedValueBox<[CheckedContinuation<Void, Never>]?>([])

    /// Starts reading `fd` (owned from now on); each connection goes to `adopter`, with the
    /// position of the listener it names in `listenerNames`.
    init(fd: Int32, listenerNames: [String], adopter: ConnectionAdopter, logger: Logger) {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: DispatchQueue(label: "baton.inbox"))
        self.source = source
        let received = self.received
        let prefix = Array("\(ConnectionInbox.message) ".utf8)
        source.setEventHandler {
            var buffer = [UInt8](repeating: 0, count: 512)
            // What arrived in one wake-up goes to the event loops as one batch per listener.
            var batch: [Int?: [Int32]] = [:]
            defer { for (listener, fds) in batch { adopter.adopt(fds, listener: listener, handedOver: true) } }
            while true {
                var connection: Int32 = -1
                let n = buffer.withUnsafeMutableBytes { baton_recv_fd(fd, $0.baseAddress, $0.count, &connection) }
                if n == 0 {  // every sender is gone (the master exited): nothing more can come
                    source.cancel()
                    return
                }
                guard n > 0 else {
                    if errno != EAGAIN && errno != EINTR {
                        logger.warning("connection inbox: \(String(cString: strerror(errno)))")
                        source.cancel()
                    }
                    return
                }
                guard connection >= 0 else { continue }
                guard buffer[0..<n].starts(with: prefix), Self.isStreamSocket(connection) else {
                    logger.warning("connection inbox: dropped a message that is not a Baton connection hand-over")
                    close(connection)
                    continue
                }
                received.withLockedValue { $0 += 1 }
                // A listener this generation does not have: served, but not handed on again.
                let name = String(decoding: buffer[prefix.count..<n], as: UTF8.self)
                batch[listenerNames.firstIndex(of: name), default: []].append(connection)
            }
        }
        let waiters = self.waiters
        source.setCancelHandler {
            close(fd)
            // After the last batch went to the adopter (the event handler's defer).
            for waiter in waiters.withLockedValue({ state in defer { state = nil }; return state ?? [] }) { waiter.resume() }
        }
        source.resume()
    }

    /// Connections received so far.
    var count: Int { received.withLockedValue { $0 } }

    /// Stops reading and closes the inbox. A connection still queued in it is closed with it.
    func stop() {
        source.cancel()
    }

    /// Returns once the reading has ended: every sender is gone (the master closes its end once
    /// this generation is ready; the generations it replaced close theirs when they have handed
    /// everything over), or ``stop()``.
    func waitUntilSendersAreGone() async {
        await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
            let ended = waiters.withLockedValue { state -> Bool in
                guard state != nil else { return true }
                state!.append(waiter)
                return false
            }
            if ended { waiter.resume() }
        }
    }

    private static func isStreamSocket(_ fd: Int32) -> Bool {
        var type: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) == 0 && type == Int32(SOCK_STREAM.rawValue)
    }
}
