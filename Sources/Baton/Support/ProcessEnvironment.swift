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

    /// The working directory (getcwd), or nil when it cannot be read (removed, or too long).
    package static func workingDirectory() -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buffer, buffer.count) != nil else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `name` as an absolute path, the way a shell finds a command: itself when it starts with a
    /// slash, under the working directory when it has one elsewhere, else the first executable
    /// of that name in `PATH`; nil when it cannot be found.
    package static func executablePath(_ name: String, environment: [String: String] = current()) -> String? {
        if name.hasPrefix("/") { return name }
        if name.contains("/") {
            guard let cwd = workingDirectory() else { return nil }
            return (cwd == "/" ? "" : cwd) + "/" + (name.hasPrefix("./") ? String(name.dropFirst(2)) : name)
        }
        guard !name.isEmpty else { return nil }
        for folder in (environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(folder)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate.hasPrefix("/") ? candidate : executablePath(candidate, environment: environment) }
        }
        return nil
    }
}
