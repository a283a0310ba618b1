import BatonFuzzTargets
import XCTest

/// Every committed fuzz input (Fuzz/corpus/<target>/: the seeds, what libFuzzer kept for new
/// coverage, and the inputs of the bugs it found) through the same checks as `baton-fuzz`, so a
/// regression fails here without running the fuzzer (Fuzz/README.md).
final class CorpusReplayTests: XCTestCase {
    /// Fuzz/corpus, found from this file (tests run in the checkout).
    private static let corpus = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz/corpus")

    private func replay(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let target = try XCTUnwrap(FuzzTargets.named(name), "no fuzz target \(name) (a release build has none)", file: file, line: line)
        let folder = Self.corpus.appendingPathComponent(name)
        let inputs = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { !$0.hasPrefix(".") }.sorted()
        XCTAssertFalse(inputs.isEmpty, "no corpus in \(folder.path)", file: file, line: line)
        for input in inputs {
            let bytes = try [UInt8](Data(contentsOf: folder.appendingPathComponent(input)))
            let broken = target.check(bytes)
            XCTAssertTrue(broken.isEmpty, "\(name)/\(input): \(broken.joined(separator: "; "))", file: file, line: line)
        }
    }

    func testEveryTargetHasACorpus() throws {
        let folders = try FileManager.default.contentsOfDirectory(atPath: Self.corpus.path).sorted()
        XCTAssertEqual(folders, FuzzTargets.all.map(\.name).sorted())
    }

    func testWatchConf() throws { try replay("watch-conf") }
    func testControlRequest() throws { try replay("control-request") }
    func testWorkerChannel() throws { try replay("worker-channel") }
    func testNotifyMessage() throws { try replay("notify-message") }
    func testListenAddress() throws { try replay("listen-address") }
    func testMasterRecord() throws { try replay("master-record") }
    func testRequestBoundary() throws { try replay("request-boundary") }
}
