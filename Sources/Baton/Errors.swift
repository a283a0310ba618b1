#if canImport(Glibc)
import Glibc
#endif

/// Errors Baton reports. Each message says what was being done and why it failed.
public enum BatonError: Error, CustomStringConvertible, Equatable {
    /// A listen address that cannot be used: the text given, and why.
    case invalidAddress(String, String)
    /// A system call failed: what was being done, and the `errno` value.
    case system(String, Int32)
    /// What systemd or a Baton master passed in the environment is malformed.
    case invalidEnvironment(String)
    /// A worker could not be started: the executable, and the `errno` value.
    case spawnFailed(String, Int32)
    /// A master re-execution could not hand over or take over its state.
    case masterHandover(String)

    /// The message for the log: what was being done and why it failed.
    public var description: String {
        switch self {
        case .invalidAddress(let text, let why): return "invalid listen address '\(text)': \(why)"
        case .system(let what, let code): return "\(what): \(String(cString: strerror(code))) (errno \(code))"
        case .invalidEnvironment(let why): return "invalid socket-activation environment: \(why)"
        case .spawnFailed(let path, let code): return "cannot start \(path): \(String(cString: strerror(code)))"
        case .masterHandover(let why): return "master hand-over: \(why)"
        }
    }

    /// The `errno` of the last failed call, wrapped with what was being done.
    static func errno(_ what: String) -> BatonError { .system(what, Glibc.errno) }
}

/// Why a master stopped.
public enum MasterError: Error, CustomStringConvertible {
    /// Generation 1 never became ready: there is no release to keep serving.
    case firstGenerationFailed

    /// The message for the log.
    public var description: String {
        switch self {
        case .firstGenerationFailed: return "the first generation did not start; see the log above"
        }
    }
}
