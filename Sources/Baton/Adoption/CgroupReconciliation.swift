#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// After an adoption under systemd, compares what the unit's control group holds with what the
/// adopted record accounts for.
///
/// With `KillMode=process` (what adoption needs: systemd must not kill the workers when the
/// master dies) systemd no longer cleans the cgroup behind a dead master, so a process the record
/// does not name would go unnoticed. The one known case, a worker spawned just before the master
/// died and not yet given to the keeper, drains by itself when its control channel closes; any
/// other is reported, never signalled: the master cannot tell what it is.
enum CgroupReconciliation {
    /// A process of the unit that is neither the master, its keeper, an adopted worker, nor a
    /// descendant of one of them (an app's own helpers are the app's business).
    struct Stray: Equatable, CustomStringConvertible {
        var pid: pid_t
        var parent: pid_t
        var command: String
        var description: String { "pid \(pid) (\(command), parent \(parent))" }
    }

    /// The processes of `procs` that are not in `known` and descend from none of them.
    /// `parents` maps each pid to its parent (a pid missing from it has exited: not a stray).
    static func strays(procs: [pid_t], parents: [pid_t: pid_t], known: Set<pid_t>) -> [pid_t] {
        procs.filter { pid in
            guard parents[pid] != nil else { return false }
            var current = pid
            var steps = 0
            while steps < 64 {  // bounded: a cycle is impossible, but the table is a snapshot
                if known.contains(current) { return false }
                guard let parent = parents[current], parent > 1 else { return true }
                current = parent
                steps += 1
            }
            return true
        }
    }

    /// The unit's strays now, or nil when this process is not a systemd service's (outside
    /// systemd the cgroup is a login session's, full of unrelated processes). Throws when the
    /// cgroup cannot be read.
    static func strays(known: Set<pid_t>) throws -> [Stray]? {
        let files = procsFiles(read("/proc/self/cgroup") ?? "")
        guard ProcessInfo.processInfo.environment["INVOCATION_ID"].map({ !$0.isEmpty }) == true, !files.isEmpty else { return nil }
        guard let text = files.lazy.compactMap(read).first else {
            throw BatonError.system("cannot read the unit's cgroup (\(files.joined(separator: ", ")))", ENOENT)
        }
        let procs = text.split(separator: "\n").compactMap { pid_t($0) }
        var parents: [pid_t: pid_t] = [:]
        var commands: [pid_t: String] = [:]
        for pid in procs {
            guard let (parent, command) = stat(of: pid) else { continue }
            parents[pid] = parent
            commands[pid] = command
        }
        return strays(procs: procs, parents: parents, known: known).map {
            Stray(pid: $0, parent: parents[$0] ?? 0, command: commands[$0] ?? "?")
        }
    }

    /// Where the `cgroup.procs` of a service's cgroup may be, from `/proc/self/cgroup`: the
    /// unified hierarchy (cgroup v2, at `/sys/fs/cgroup`, or beside v1 controllers at
    /// `/sys/fs/cgroup/unified`), then v1's `name=systemd`. Empty when the cgroup is no
    /// `.service`'s.
    static func procsFiles(_ selfCgroup: String) -> [String] {
        var files: [String] = []
        for line in selfCgroup.split(separator: "\n") {
            // ID:CONTROLLERS:PATH; the path may hold colons.
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3, fields[2].hasSuffix(".service") else { continue }
            let path = fields[2]
            if fields[0] == "0" && fields[1].isEmpty {
                files += ["/sys/fs/cgroup\(path)/cgroup.procs", "/sys/fs/cgroup/unified\(path)/cgroup.procs"]
            } else if fields[1] == "name=systemd" {
                files.append("/sys/fs/cgroup/systemd\(path)/cgroup.procs")
            }
        }
        return files
    }

    /// The parent and command of `pid` from `/proc/PID/stat`; the command may hold spaces and
    /// parentheses, so the fields are read after its last `)`.
    static func stat(of pid: pid_t) -> (parent: pid_t, command: String)? {
        guard let text = read("/proc/\(pid)/stat"),
              let open = text.firstIndex(of: "("), let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 1, let parent = pid_t(fields[1]) else { return nil }
        return (parent, String(text[text.index(after: open)..<close]))
    }

    private static func read(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }
}
