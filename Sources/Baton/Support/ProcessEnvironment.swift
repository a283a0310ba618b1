#if canImport(Glibc)
import Glibc
#endif

/// Reads the process environment.
package enum ProcessEnvironment {
    /// A snapshot of `environ` as a dictionary (the first value of a repeated name wins).
    package static func current() -> [String: String] {
        var result: [String: String] = [:]
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if let equals = text.firstIndex(of: "=") {
                let name = String(text[..<equals])
                if result[name] == nil { result[name] = String(text[text.index(after: equals)...]) }
            }
            pointer += 1
        }
        return result
    }
}
