#if canImport(Glibc)
import Glibc
#endif

/// A descriptor a master names in its worker's environment: the control channel
/// (`BATON_CONTROL_FD`) or the connection inbox (`BATON_HANDOFF_FD`).
///
/// A worker goes on without one it cannot use — it serves all the same, but no longer reads the
/// master's drain orders, or no longer takes the connections the previous generation hands over
/// — so a named descriptor that is malformed, misplaced or closed must be said (once, at
/// warning) rather than silently turn the hand-over off.
package enum HandedDescriptor {
    /// What `adopt` found.
    package struct Adoption: Equatable, Sendable {
        /// The descriptor, adopted (close-on-exec set); nil when there is none to use.
        package var fd: Int32?
        /// Why a descriptor that was named cannot be used; nil when it was adopted or when none
        /// was named (a master of an older protocol, or one that gives no such channel).
        package var problem: String?
    }

    /// Adopts the descriptor `variable` names in `environment` when it is where the protocol puts
    /// it (`expected`: right after the listeners for the control channel, after that for the
    /// inbox) and open; otherwise says why not in ``Adoption/problem``.
    package static func adopt(_ variable: String, in environment: [String: String], at expected: Int32) -> Adoption {
        guard let text = environment[variable] else { return Adoption(fd: nil, problem: nil) }
        let consequence = variable == WorkerEnvironment.connectionInboxFD
            ? "this worker takes no connections handed over by the previous generation"
            : "this worker does not read the master's drain orders and drains with its own defaults"
        guard let fd = Int32(text) else {
            return Adoption(fd: nil, problem: "\(variable)='\(text)' is not a descriptor number: \(consequence)")
        }
        guard fd == expected else {
            return Adoption(fd: nil, problem: "\(variable)=\(fd), but the protocol puts it at fd \(expected): \(consequence)")
        }
        guard fcntl(fd, F_SETFD, FD_CLOEXEC) == 0 else {
            let reason = String(cString: strerror(errno))
            return Adoption(fd: nil, problem: "\(variable)=\(fd) cannot be used (\(reason)): \(consequence)")
        }
        return Adoption(fd: fd, problem: nil)
    }
}
