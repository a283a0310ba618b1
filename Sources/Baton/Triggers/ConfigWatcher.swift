#if canImport(Glibc)
import Glibc
#endif
@preconcurrency import Dispatch
import NIOConcurrencyHelpers

/// Watches one file for every way a deploy changes it, with inotify on its *folder* (editors and
/// uploaders replace files by rename, which a watch on the file itself would lose): an in-place
/// write, a write to a temporary name renamed over it (vim, rsync, scp), delete and re-create,
/// `touch`.
///
/// Bursts coalesce: each event restarts a quiet period, and `onChange` runs once the file has
/// been left alone for that long — one edit, one call, however many events it made. Nothing
/// polls: an idle watcher sleeps in the kernel.
package final class ConfigWatcher: Sendable {
    /// The file watched.
    package let path: String
    private let fd: Int32
    private let queue = DispatchQueue(label: "baton.config-watcher")
    private let source: any DispatchSourceRead
    private let state = NIOLockedValueBox<(generation: Int, pending: Bool)>((0, false))
    private let name: String

    /// Starts watching `path`. `quietPeriod` is read again at each event (watch.conf's
    /// `DelaySecond` may change with the file); `onChange` runs on a private queue.
    package init(path: String, quietPeriod: @escaping @Sendable () -> Duration, onChange: @escaping @Sendable () -> Void) throws {
        self.path = path
        let (folder, name) = PathName.split(path)
        self.name = name
        let fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0 else { throw BatonError.errno("inotify_init1") }
        let mask = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_ATTRIB)
        guard inotify_add_watch(fd, folder, mask) >= 0 else {
            let error = BatonError.errno("inotify_add_watch on \(folder)")
            close(fd)
            throw error
        }
        self.fd = fd
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        self.source = source
        let state = self.state
        let queue = self.queue
        source.setEventHandler {
            guard Self.readEvents(fd).contains(name) else { return }
            let delay = quietPeriod()
            let generation = state.withLockedValue { current -> Int in
                current.generation += 1
                current.pending = true
                return current.generation
            }
            queue.asyncAfter(deadline: .now() + .nanoseconds(Int(delay.nanoseconds))) {
                // Only the last event of a burst fires.
                let fire = state.withLockedValue { current -> Bool in
                    guard current.generation == generation else { return false }
                    current.pending = false
                    return true
                }
                if fire { onChange() }
            }
        }
        source.setCancelHandler { _ = Glibc.close(fd) }
        source.resume()
    }

    /// Treats every change made so far as handled: an upgrade is about to read the file anyway
    /// (`baton reload` right after a deploy wrote watch.conf), so the quiet period under way ends
    /// without a second upgrade. A change made after this call triggers as usual. Returns whether
    /// a change was pending.
    package func absorbPendingChanges() -> Bool {
        // Events the kernel has queued but the read source has not handled yet count too.
        let fd = self.fd, name = self.name, state = self.state
        return queue.sync {
            let unread = Self.readEvents(fd).contains(name)
            return state.withLockedValue { current -> Bool in
                let pending = current.pending || unread
                current.generation += 1
                current.pending = false
                return pending
            }
        }
    }

    /// Stops watching.
    package func stop() {
        state.withLockedValue { $0.generation += 1 }
        source.cancel()
    }

    /// Reads every pending event; returns the names they concern.
    private static func readEvents(_ fd: Int32) -> Set<String> {
        var names: Set<String> = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard count > 0 else { return names }
            var offset = 0
            // struct inotify_event { int wd; uint32_t mask, cookie, len; char name[len]; }
            while offset + 16 <= count {
                let length = buffer.withUnsafeBytes { Int($0.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self)) }
                let nameBytes = buffer[(offset + 16)..<min(offset + 16 + length, count)].prefix { $0 != 0 }
                if !nameBytes.isEmpty { names.insert(String(decoding: nameBytes, as: UTF8.self)) }
                offset += 16 + length
            }
        }
    }
}
