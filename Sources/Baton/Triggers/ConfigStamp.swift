#if canImport(Glibc)
import Glibc
#endif

/// What a master last read of the watched deploy file (watch.conf): its inode, size and
/// modification time. Kept in the ``MasterRecord`` so that a master adopting the workers of one
/// that died can tell a deploy made while no master watched (inotify saw it, nobody listened)
/// from no deploy at all: a `touch`, an edit or a rename each changes the stamp.
struct ConfigStamp: Codable, Equatable, Sendable, CustomStringConvertible {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    /// `st_mtim` in nanoseconds since the epoch.
    var modified: Int64

    /// The file's stamp now; nil when it cannot be read (missing).
    init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        self.init(device: UInt64(info.st_dev), inode: UInt64(info.st_ino), size: Int64(info.st_size),
                  modified: Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec))
    }

    init(device: UInt64, inode: UInt64, size: Int64, modified: Int64) {
        (self.device, self.inode, self.size, self.modified) = (device, inode, size, modified)
    }

    var description: String {
        "inode \(inode), \(size) bytes, modified at \(modified / 1_000_000_000).\(String(modified % 1_000_000_000 / 1_000_000).leftPadded(to: 3))"
    }
}

private extension String {
    func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
