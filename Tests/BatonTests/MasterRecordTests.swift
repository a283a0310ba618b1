import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import Baton

/// The record a master hands to its next image: it survives the round trip through a memfd, keeps
/// ages, and a record it cannot read is refused with the reason.
final class MasterRecordTests: XCTestCase {
    private func sample() -> MasterRecord {
        let plan = MasterRecord.Plan(executable: "/srv/app/app", arguments: ["--port", "8080"], version: "7",
                                     environment: ["A": "1"], listen: ["0.0.0.0:8080", "unix:/run/app.sock"])
        var record = MasterRecord(
            writtenAt: MasterRecord.bootTime(),
            image: .init(path: "/srv/app/app", arguments: ["app", "--port", "8080"], executions: 3, processAge: 5_000_000_000),
            listeners: [.init(fd: 8, name: "http", address: "0.0.0.0:8080"), .init(fd: 9, name: "web", address: nil)],
            currentListeners: [8], notify: .init(fd: 10, path: "@baton/1/2"), control: .init(fd: 11, path: "/run/app/baton.sock"),
            generations: [
                .init(number: 4, pid: 100, version: "6", state: "draining", age: 3_000_000_000, readyAge: 2_900_000_000,
                      drainAge: 1_000_000_000, status: "bye", plan: plan, listeners: [8], control: 12),
                .init(number: 5, pid: 101, version: "7", state: "serving", age: 1_200_000_000, readyAge: 1_000_000_000,
                      drainAge: nil, status: nil, plan: plan, listeners: [8], control: 13),
            ],
            nextNumber: 6, currentPlan: plan, previousPlan: nil, consecutiveFailures: 0,
            lastUpgrade: .init(.succeeded(generation: 5, pid: 101, version: "7", readyAfter: .milliseconds(80), draining: [4])))
        record.reexecFailures = 1
        return record
    }

    func testRoundTripThroughAMemfd() throws {
        let record = sample()
        let fd = try record.writeToMemfd()
        defer { close(fd) }
        XCTAssertNotEqual(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0, "the record must not leak into children before the exec")
        let read = try MasterRecord.read(from: fd)
        XCTAssertEqual(read, record)
        XCTAssertEqual(try read.generations[0].plan.launchPlan().listen, [.tcp(host: "0.0.0.0", port: 8080), .unix(path: "/run/app.sock")])
        XCTAssertEqual(read.lastUpgrade?.outcome, .succeeded(generation: 5, pid: 101, version: "7", readyAfter: .milliseconds(80), draining: [4]))
    }

    func testCapabilitiesAndACalledOffDrainCarryOverToTheNextImage() throws {
        var record = sample()
        record.generations[0].followsCanaryOrders = true
        record.generations[0].resumes = true
        record.generations[0].resumed = true
        record.generations[0].drainsFor = 5
        let fd = try record.writeToMemfd()
        defer { close(fd) }
        let read = try MasterRecord.read(from: fd)
        let (adopted, _) = try read.adopted(listeners: ListenerSet(adopting: read, backlog: 128))
        let old = adopted.generations[0]
        XCTAssertTrue(old.followsCanaryOrders, "else the next image refuses a canary beside it")
        XCTAssertTrue(old.resumes)
        XCTAssertTrue(old.resumed, "else its next drain would send a second SIGTERM")
        XCTAssertEqual(old.drainsFor, 5)
        XCTAssertFalse(adopted.generations[1].resumes, "absent (a record of an older release): cannot be called off")
    }

    /// A stop (or a port change) closes sockets in the master while generations still drain
    /// with them: the record no longer has those, and a master that adopts it takes the drainers
    /// without them (they accept there no more), and learns that the writer was stopping. A
    /// generation that serves must still find every socket it uses.
    func testADrainersSocketsClosedByTheMasterAreLeftOutAndAStopCarriesOver() throws {
        var record = sample()
        record.listeners = [.init(fd: 9, name: "web", address: nil)]
        record.currentListeners = []
        record.generations[0].listeners = [8, 9]
        XCTAssertThrowsError(try record.adopted(listeners: ListenerSet(adopting: record, backlog: 128)), "generation 5 serves on fd 8") { error in
            XCTAssertTrue("\(error)".contains("fd 8, which is not a listener of the record"), "\(error)")
        }
        record.generations.removeLast()
        record.stopping = true
        let fd = try record.writeToMemfd()
        defer { close(fd) }
        let read = try MasterRecord.read(from: fd)
        var (adopted, _) = try read.adopted(listeners: ListenerSet(adopting: read, backlog: 128))
        XCTAssertEqual(adopted.generations[0].listeners.map(\.fd), [9], "the closed fd 8 is left out")
        XCTAssertTrue(adopted.stopping)
        record.stopping = nil
        (adopted, _) = try record.adopted(listeners: ListenerSet(adopting: record, backlog: 128))
        XCTAssertFalse(adopted.stopping, "absent: not stopping (and every record of an older release)")
    }

    /// An adopting master gets the descriptors under the names the dead master gave them, at
    /// other numbers: the record is renumbered by name, and a generation whose channel did not
    /// come is left out.
    func testARecordIsRenumberedByTheKeepersNames() throws {
        var record = sample()
        record.generations[1].inbox = 14
        record.generations[1].pidfd = 15
        record.keeper = .init(link: 20, pid: 7, adoptPath: "/run/app/baton.adopt.sock", successorTimeoutMilliseconds: 30_000,
                              names: ["fd.1.1": 8, "fd.1.2": 9, "fd.1.3": 10, "fd.1.4": 11, "fd.1.5": 13, "fd.1.6": 14, "pid.101": 15])
        let kit: [String: Int32] = ["fd.1.1": 30, "fd.1.2": 31, "fd.1.3": 32, "fd.1.4": 33, "fd.1.5": 34, "fd.1.6": 35, "pid.101": 36, "record": 37]
        let (renumbered, lost) = try record.renumbered(by: kit)
        XCTAssertEqual(lost, [4], "generation 4's control channel (fd 12) was not kept")
        XCTAssertEqual(renumbered.listeners.map(\.fd), [30, 31])
        XCTAssertEqual(renumbered.currentListeners, [30])
        XCTAssertEqual(renumbered.notify, .init(fd: 32, path: "@baton/1/2"))
        XCTAssertEqual(renumbered.control, .init(fd: 33, path: "/run/app/baton.sock"))
        XCTAssertEqual(renumbered.generations.map(\.number), [5])
        XCTAssertEqual(renumbered.generations[0].control, 34)
        XCTAssertEqual(renumbered.generations[0].inbox, 35)
        XCTAssertEqual(renumbered.generations[0].pidfd, 36)
        XCTAssertEqual(renumbered.generations[0].listeners, [30])
        XCTAssertNil(renumbered.keeper, "the adopting master keeps its own table")

        var withoutNotify = kit
        withoutNotify["fd.1.3"] = nil
        XCTAssertThrowsError(try record.renumbered(by: withoutNotify)) { error in
            XCTAssertTrue("\(error)".contains("the notify socket"), "\(error)")
        }
        record.keeper = nil
        XCTAssertThrowsError(try record.renumbered(by: kit))
    }

    /// The dead master had closed a socket a generation still drained with (a port change, a
    /// stop): the keeper let go of it too, and the drainer is adopted without it; a serving
    /// generation's socket that did not come is an error.
    func testADrainersClosedSocketIsLeftOutWhenRenumbered() throws {
        var record = sample()
        record.listeners = [.init(fd: 9, name: "web", address: nil)]
        record.currentListeners = [9]
        record.generations[0].listeners = [8, 9]
        record.generations[1].listeners = [9]
        record.keeper = .init(link: 20, pid: 7, adoptPath: "/run/app/baton.adopt.sock", successorTimeoutMilliseconds: 30_000,
                              names: ["fd.1.2": 9, "fd.1.3": 10, "fd.1.4": 12, "fd.1.5": 13])
        let kit: [String: Int32] = ["fd.1.2": 31, "fd.1.3": 32, "fd.1.4": 33, "fd.1.5": 34]
        let (renumbered, lost) = try record.renumbered(by: kit)
        XCTAssertEqual(lost, [], "\(renumbered.generations)")
        XCTAssertEqual(renumbered.generations.map(\.listeners), [[31], [31]], "the drainer's closed fd 8 is left out")
        record.generations[1].listeners = [8]
        XCTAssertThrowsError(try record.renumbered(by: kit), "generation 5 serves on fd 8, which did not come") { error in
            XCTAssertTrue("\(error)".contains("a listener of generation 5"), "\(error)")
        }
    }

    func testAgesContinueFromWhenTheRecordWasWritten() {
        var record = sample()
        record.writtenAt = MasterRecord.bootTime() - 2_000_000_000  // written 2 s ago
        let started = record.instant(age: 3_000_000_000)  // 3 s before writing: 5 s ago now
        let age = started.duration(to: .now)
        XCTAssertGreaterThanOrEqual(age, .seconds(5))
        XCTAssertLessThan(age, .seconds(6))
    }

    func testANewerOrForeignRecordIsRefusedWithTheReason() throws {
        func refusal(_ json: String) -> String {
            let fd = temporaryFile(json)
            defer { close(fd) }
            do {
                _ = try MasterRecord.read(from: fd)
                return "accepted"
            } catch {
                return "\(error)"
            }
        }
        XCTAssertTrue(refusal(#"{"format":"baton-master-record","version":99}"#).contains("version 99 is newer than this release reads"))
        XCTAssertTrue(refusal(#"{"format":"something-else","version":1}"#).contains("not a master record"))
        XCTAssertTrue(refusal("not json").contains("not JSON"))
        XCTAssertTrue(refusal(#"{"format":"baton-master-record","version":1}"#).contains("unreadable"))
    }

    /// A next start of the master (re-execution, or a respawn by its keeper) gets this start's
    /// environment without what belonged to this start only, with systemd's socket put back; a
    /// respawn's command also carries the marker and is laid out as keeper.c reads it.
    func testTheNextStartGetsTheEnvironmentWithoutThisStartsOwnAndARespawnIsMarked() {
        let environment = ["PATH": "/bin", "LISTEN_FDS": "1", "LISTEN_PID": "7", "LISTEN_FDNAMES": "http",
                           MasterRecord.environmentKey: "9", MasterCheck.environmentKey: "1", MasterRespawn.markerKey: "1", "LOG_LEVEL": "info"]
        XCTAssertEqual(MasterImage.environmentForNextStart(notifySocket: "/run/systemd/notify", from: environment),
                       ["PATH": "/bin", "LOG_LEVEL": "info", "NOTIFY_SOCKET": "/run/systemd/notify"])
        XCTAssertEqual(MasterImage.environmentForNextStart(notifySocket: nil, from: ["PATH": "/bin"]), ["PATH": "/bin"])

        let image = MasterImage.current(arguments: ["/srv/app/app", "--port", "8080"], path: "/srv/app/app")
        let respawn = MasterRespawn.of(image, notifySocket: nil, environment: ["PATH": "/bin", "LISTEN_FDS": "1"])
        XCTAssertEqual(respawn.environment, ["PATH": "/bin", MasterRespawn.markerKey: "1"])
        XCTAssertEqual(respawn.folder, FileManager.default.currentDirectoryPath)
        let fields = respawn.encoded.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        XCTAssertEqual(fields, ["/srv/app/app", respawn.folder, "3", "/srv/app/app", "--port", "8080",
                                "\(MasterRespawn.markerKey)=1", "PATH=/bin", ""], "path, folder, argc, argv, sorted environment, each ended by NUL")
    }

    func testArgv0IsResolvedAsAShellWould() {
        XCTAssertEqual(ProcessEnvironment.executablePath("/srv/app/app"), "/srv/app/app")
        var buffer = [CChar](repeating: 0, count: 4096)
        let cwd = String(cString: getcwd(&buffer, buffer.count)!)
        XCTAssertEqual(ProcessEnvironment.executablePath("./bin/app"), cwd + "/bin/app")
        XCTAssertEqual(ProcessEnvironment.executablePath("bin/app"), cwd + "/bin/app")
        XCTAssertEqual(ProcessEnvironment.executablePath("sh", environment: ["PATH": "/nonexistent:/bin"]), "/bin/sh")
        XCTAssertNil(ProcessEnvironment.executablePath("no-such-program-here", environment: ["PATH": "/nonexistent"]))
    }

    private func temporaryFile(_ text: String) -> Int32 {
        var file = [CChar]("/tmp/baton-record-XXXXXX".utf8CString)
        let fd = mkstemp(&file)
        unlink(file)
        _ = text.withCString { write(fd, $0, strlen($0)) }
        lseek(fd, 0, SEEK_SET)
        return fd
    }
}
