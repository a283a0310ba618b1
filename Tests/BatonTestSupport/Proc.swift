#if os(Linux)
import Foundation
import Glibc

/// Read-only views of /proc, used to look at the master and its workers from outside.
package enum Proc {
    /// The few fields of `/proc/PID/stat` the tests need.
    package struct Stat: Equatable {
        package var pid: pid_t
        /// R, S, D, Z (zombie), X (dead), T, …
        package var state: Character
        package var ppid: pid_t
        package var pgrp: pid_t
        /// Clock ticks after boot; with the pid it names one process, even if the pid is reused.
        package var startTime: UInt64
        /// The main thread's nice value.
        package var nice: Int = 0
    }

    /// `/proc/PID/stat`, or nil when there is no such process.
    package static func stat(_ pid: pid_t) -> Stat? {
        guard let text = readSmallFile("/proc/\(pid)/stat") else { return nil }
        return parseStat(text, pid: pid)
    }

    package static func parseStat(_ text: String, pid: pid_t) -> Stat? {
        // "pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        //  utime stime cutime cstime priority nice threads itrealvalue starttime …"
        // comm may contain spaces and parentheses: split after the last ')'.
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        // fields[0] is field 3 (state); field n is fields[n - 3].
        guard fields.count > 19, let state = fields[0].first,
              let ppid = pid_t(fields[1]), let pgrp = pid_t(fields[2]),
              let start = UInt64(fields[19]), let nice = Int(fields[16]) else { return nil }
        return Stat(pid: pid, state: state, ppid: ppid, pgrp: pgrp, startTime: start, nice: nice)
    }

    /// utime + stime of `pid` (fields 14 and 15 of `/proc/PID/stat`) in clock ticks.
    package static func cpuTicks(_ pid: pid_t) -> UInt64? {
        guard let text = readSmallFile("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count > 12, let user = UInt64(fields[11]), let system = UInt64(fields[12]) else { return nil }
        return user + system
    }

    /// True when the process exists and is neither a zombie nor dead.
    package static func isAlive(_ pid: pid_t) -> Bool {
        guard let s = stat(pid) else { return false }
        return s.state != "Z" && s.state != "X" && s.state != "x"
    }

    package static func isZombie(_ pid: pid_t) -> Bool {
        stat(pid)?.state == "Z"
    }

    /// The CPUs `pid` may run on (`Cpus_allowed_list` of `/proc/PID/status`, e.g. "0-1,4"), sorted.
    package static func allowedCPUs(_ pid: pid_t) -> [Int]? {
        guard let text = readSmallFile("/proc/\(pid)/status"),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") }) else { return nil }
        var cpus: [Int] = []
        for item in line.dropFirst("Cpus_allowed_list:".count).split(separator: ",") {
            let bounds = item.trimmingCharacters(in: .whitespaces).split(separator: "-").compactMap { Int($0) }
            guard let low = bounds.first, let high = bounds.last, low <= high else { return nil }
            cpus += Array(low...high)
        }
        return cpus.isEmpty ? nil : cpus.sorted()
    }

    /// Number of open file descriptors (entries of `/proc/PID/fd`), nil if unreadable.
    package static func openFDCount(_ pid: pid_t) -> Int? {
        guard let dir = opendir("/proc/\(pid)/fd") else { return nil }
        defer { closedir(dir) }
        var count = 0
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { count += 1 }
        }
        return count
    }

    /// Every process on the machine, as stat records.
    package static func all() -> [Stat] {
        guard let dir = opendir("/proc") else { return [] }
        defer { closedir(dir) }
        var result: [Stat] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            guard let pid = pid_t(name), let s = stat(pid) else { continue }
            result.append(s)
        }
        return result
    }

    /// Live (non-zombie) children of `pid`, found by scanning the ppid of every process.
    /// Whether `pid` is a master's keeper (it names itself `baton-keeper`).
    package static func isKeeper(_ pid: pid_t) -> Bool {
        (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.hasPrefix("baton-keeper") == true
    }

    package static func children(of pid: pid_t, includeZombies: Bool = false) -> [Stat] {
        all().filter { $0.ppid == pid && (includeZombies || ($0.state != "Z" && $0.state != "X")) }
    }

    /// Children, grandchildren, … of `pid`.
    package static func descendants(of pid: pid_t) -> [Stat] {
        let everything = all()
        var result: [Stat] = []
        var frontier: Set<pid_t> = [pid]
        while !frontier.isEmpty {
            let next = everything.filter { frontier.contains($0.ppid) }
            result.append(contentsOf: next)
            frontier = Set(next.map(\.pid))
        }
        return result
    }

    /// `/proc/PID/cmdline` with NULs turned into spaces.
    package static func commandLine(_ pid: pid_t) -> String? {
        guard let text = readSmallFile("/proc/\(pid)/cmdline") else { return nil }
        return text.split(separator: "\0").joined(separator: " ")
    }

    private static func readSmallFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self) }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Polls `condition` every `interval` until it holds or `timeout` passes. Returns the last result.
@discardableResult
package func poll(timeout: TimeInterval, interval: TimeInterval = 0.05, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while true {
        if condition() { return true }
        if Date() >= deadline { return false }
        Thread.sleep(forTimeInterval: interval)
    }
}
#endif
