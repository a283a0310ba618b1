#if canImport(Glibc)
import Glibc
#endif
import CBaton
import NIOPosix
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The check a master runs before it re-executes itself: the new binary is started in check
/// mode, reads the record the exec would hand it, and answers. Only a binary that answers "ok"
/// is exec'd into; anything else (it does not start, is not a Baton master, is too old to read
/// the record, hangs) leaves the running image in place with the reason in the log.
///
/// Check mode: `BATON_MASTER_CHECK=1` in the environment, the record at fd 3, the answer (one
/// JSON object) to be written to fd 4. The binary runs with the master's own arguments and
/// environment (without its sockets), so an embedding app's start-up code runs as it will after
/// the exec; ``BatonMaster/run()`` answers before it binds or starts anything. A binary without
/// check mode behaves as a second master would: it fails to bind the master's addresses or is
/// killed after the timeout, and the check fails either way.
enum MasterCheck {
    static let environmentKey = "BATON_MASTER_CHECK"

    /// What the checked binary answers.
    struct Answer: Codable, Equatable {
        var ok: Bool
        /// The Baton release the binary links.
        var batonVersion: String
        /// The newest record version it reads.
        var recordVersion: Int
        /// The master⇄worker protocol it speaks.
        var workerProtocol: Int
        var reason: String?
    }

    // MARK: The running master's side

    /// Starts `image` in check mode with `record`; returns its answer, or throws the reason it
    /// cannot be exec'd into.
    static func run(_ image: MasterImage, record: MasterRecord, timeout: Duration = .seconds(5)) async throws -> Answer {
        try Spawner.checkExecutable(image.path)
        let memfd = try record.writeToMemfd()
        defer { close(memfd) }
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { throw BatonError.errno("pipe") }
        defer { close(ends[0]) }
        for fd in ends { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        _ = fcntl(ends[0], F_SETFL, O_NONBLOCK)
        var environment = ProcessEnvironment.current().filter { WorkerEnvironment.isInheritable($0.key) }
        environment[environmentKey] = "1"
        let pid: pid_t
        do {
            pid = try Spawner.spawnNow(path: image.path, argv: image.arguments,
                                       envp: environment.map { "\($0.key)=\($0.value)" }, fds: [memfd, ends[1]],
                                       setListenPID: false)
        } catch {
            close(ends[1])
            throw error
        }
        close(ends[1])
        let milliseconds = Int32(timeout.milliseconds)
        let (rc, status) = try await NIOThreadPool.singleton.runIfActive { () -> (Int32, Int32) in
            var status: Int32 = 0
            let rc = baton_wait_exit(pid, milliseconds, &status)
            return (rc, status)
        }
        if rc == ETIMEDOUT {
            kill(pid, SIGKILL)
            var ignored: Int32 = 0
            waitpid(pid, &ignored, 0)
            throw BatonError.masterHandover("\(image.path) did not answer the check within \(timeout.shortDescription) (killed it)")
        }
        let exit = ExitStatus(waitStatus: status)
        let text = readAll(ends[0])
        guard rc == 0, let answer = try? JSONDecoder().decode(Answer.self, from: Data(text.utf8)) else {
            let why = rc == 0 ? "\(exit)" : String(cString: strerror(rc))
            throw BatonError.masterHandover("\(image.path) did not pass the check (\(why), no answer): it is not a Baton master of release 0.1.0 or later, or it failed at start; see its output above")
        }
        guard answer.ok, exit == .exited(0) else {
            throw BatonError.masterHandover("\(image.path) (Baton \(answer.batonVersion)) refused the hand-over: \(answer.reason ?? "\(exit)")")
        }
        return answer
    }

    private static func readAll(_ fd: Int32) -> String {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 65536 {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            bytes += buffer[0..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    // MARK: The checked binary's side

    /// In check mode: reads the record at fd 3, answers on fd 4 and exits (0 when it can take
    /// over). Otherwise returns at once.
    static func answerIfAsked() {
        guard getenv(environmentKey) != nil else { return }
        var answer = Answer(ok: true, batonVersion: Baton.version, recordVersion: MasterRecord.currentVersion,
                            workerProtocol: WorkerEnvironment.currentProtocol)
        do {
            let record = try MasterRecord.read(from: 3)
            // Everything the adoption will parse, parsed now.
            for plan in record.generations.map(\.plan) + [record.currentPlan, record.previousPlan].compactMap({ $0 }) {
                _ = try plan.launchPlan()
            }
            for listener in record.listeners { _ = try listener.address.map { try ListenAddress(parsing: $0) } }
            for entry in record.generations where Generation.State(rawValue: entry.state) == nil {
                throw BatonError.masterHandover("unknown generation state '\(entry.state)'")
            }
        } catch {
            answer.ok = false
            answer.reason = "\(error)"
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let bytes = Array((try? encoder.encode(answer)) ?? Data())
        _ = bytes.withUnsafeBytes { write(4, $0.baseAddress, $0.count) }
        exit(answer.ok ? 0 : 1)
    }
}
