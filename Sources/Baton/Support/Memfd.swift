#if canImport(Glibc)
import Glibc
#endif
import CBaton

/// An anonymous in-memory file (memfd, close-on-exec) to hand bytes to another process with its
/// descriptor: the master record, the keeper's copy of the master's command.
enum Memfd {
    /// A new memfd named `name` holding `bytes`, its offset back at 0. The caller closes it.
    static func holding(_ bytes: [UInt8], name: String) throws -> Int32 {
        let fd = baton_memfd_create(name)
        guard fd >= 0 else { throw BatonError.errno("memfd_create") }
        var written = 0
        while written < bytes.count {
            let count = bytes[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else {
                let error = BatonError.errno("writing \(name)")
                close(fd)
                throw error
            }
            written += count
        }
        lseek(fd, 0, SEEK_SET)
        return fd
    }
}
