import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import Baton

/// What an adopting master reports from its unit's cgroup: processes that neither it, its keeper
/// nor an adopted worker accounts for.
final class CgroupReconciliationTests: XCTestCase {
    func testTheMasterKeeperWorkersAndTheirDescendantsAreAccountedFor() {
        // 10 master, 11 keeper, 20 and 30 workers (parent 1: their master died), 21 a worker's
        // child, 22 that child's child.
        let parents: [pid_t: pid_t] = [10: 1, 11: 1, 20: 1, 30: 1, 21: 20, 22: 21]
        XCTAssertEqual(CgroupReconciliation.strays(procs: [10, 11, 20, 21, 22, 30], parents: parents, known: [10, 11, 20, 30]), [])
    }

    func testAnOrphanNoRecordNamesIsAStray() {
        // 40: a worker started just before the master died (reparented to 1); 41 its child.
        let parents: [pid_t: pid_t] = [10: 1, 11: 1, 20: 1, 40: 1, 41: 40]
        XCTAssertEqual(CgroupReconciliation.strays(procs: [10, 11, 20, 40, 41], parents: parents, known: [10, 11, 20]), [40, 41])
    }

    func testAProcessThatExitedMeanwhileIsNoStray() {
        XCTAssertEqual(CgroupReconciliation.strays(procs: [10, 50], parents: [10: 1], known: [10]), [])
    }

    func testStatIsReadAfterTheLastParenthesis() throws {
        // This test's own process: its parent is known, and a command name is read whole.
        let own = try XCTUnwrap(CgroupReconciliation.stat(of: getpid()))
        XCTAssertEqual(own.parent, getppid())
        XCTAssertFalse(own.command.isEmpty)
        XCTAssertNil(CgroupReconciliation.stat(of: -1))
    }

    func testOutsideASystemdServiceNothingIsReported() {
        // Without INVOCATION_ID (set by systemd for a service) the cgroup is a login session's or
        // a container's, full of unrelated processes: nothing is read.
        let saved = getenv("INVOCATION_ID").map { String(cString: $0) }
        unsetenv("INVOCATION_ID")
        defer { if let saved { setenv("INVOCATION_ID", saved, 1) } }
        XCTAssertNil(try CgroupReconciliation.strays(known: [getpid()]))
    }

    func testTheCgroupIsLookedForInEachHierarchy() {
        // cgroup v2 alone, then a hybrid host (v1 controllers, unified beside them, name=systemd).
        XCTAssertEqual(CgroupReconciliation.procsFiles("0::/system.slice/a.service\n"),
                       ["/sys/fs/cgroup/system.slice/a.service/cgroup.procs", "/sys/fs/cgroup/unified/system.slice/a.service/cgroup.procs"])
        XCTAssertEqual(CgroupReconciliation.procsFiles("4:memory:/x\n1:name=systemd:/system.slice/a.service\n0::/system.slice/a.service\n"),
                       ["/sys/fs/cgroup/systemd/system.slice/a.service/cgroup.procs", "/sys/fs/cgroup/system.slice/a.service/cgroup.procs",
                        "/sys/fs/cgroup/unified/system.slice/a.service/cgroup.procs"])
        XCTAssertEqual(CgroupReconciliation.procsFiles("0::/user.slice/session-1.scope\n"), [], "no service: nothing to read")
    }
}
