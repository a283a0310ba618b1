/// Tells a complete executable from a half-uploaded one.
///
/// An ELF file is written front to back, and its section header table sits at the very end: a
/// file cut short has tables or segments pointing past its end. A `#!` script is accepted as is.
enum ExecutableCheck {
    /// Returns nil when `bytes` look like a complete executable, else what is wrong.
    static func problem(in bytes: [UInt8]) -> String? {
        if bytes.starts(with: [0x23, 0x21]) { return nil }  // "#!"
        guard bytes.starts(with: [0x7f, 0x45, 0x4c, 0x46]) else { return "is neither an ELF executable nor a #! script" }
        guard bytes.count >= 64 else { return "is truncated: \(bytes.count) bytes is shorter than an ELF header" }
        guard bytes[4] == 2, bytes[5] == 1 else { return "is not a 64-bit little-endian ELF file (this machine runs x86_64)" }
        let size = UInt64(bytes.count)
        func read(_ offset: Int, _ width: Int) -> UInt64 {
            (0..<width).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1)) }
        }
        let programOffset = read(0x20, 8), programEntry = read(0x36, 2), programCount = read(0x38, 2)
        let sectionOffset = read(0x28, 8), sectionEntry = read(0x3A, 2), sectionCount = read(0x3C, 2)
        if programOffset + programEntry * programCount > size {
            return "is truncated: its program headers end at byte \(programOffset + programEntry * programCount), the file has \(size)"
        }
        if sectionOffset + sectionEntry * sectionCount > size {
            return "is truncated (half uploaded?): its section table ends at byte \(sectionOffset + sectionEntry * sectionCount), the file has \(size)"
        }
        for index in 0..<Int(programCount) {
            let header = Int(programOffset) + index * Int(programEntry)
            guard header + 0x28 <= bytes.count else { break }
            let offset = read(header + 0x08, 8), fileSize = read(header + 0x20, 8)
            if read(header, 4) == 1, offset + fileSize > size {  // PT_LOAD
                return "is truncated: segment \(index) ends at byte \(offset + fileSize), the file has \(size)"
            }
        }
        return nil
    }
}
