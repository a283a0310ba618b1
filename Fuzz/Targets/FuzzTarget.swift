// The fuzz targets' common ground: what a target is, how it reports a broken property, and the
// list of them. Each target (one file per parser) is a function from bytes to the properties the
// input broke; `baton-fuzz` aborts on any (so libFuzzer keeps the input), BatonFuzzTests fails.
//
// The targets reach internal parsers with `@testable import`, which needs a debug build (SwiftPM
// compiles every module for testing there). A release build of every target (Benchmarks/run.sh)
// compiles them out: `FuzzTargets.all` is empty there.

/// One parser under fuzzing.
public struct FuzzTarget: Sendable {
    /// The name on the command line and the corpus folder (`Fuzz/corpus/<name>/`).
    public let name: String
    /// What it feeds and which properties it checks, for `baton-fuzz --list`.
    public let summary: String
    /// Runs one input and returns the properties it broke (empty: none). A crash or a hang is the
    /// parser's own failure, caught by libFuzzer (`-timeout`) or by the test process dying.
    public let check: @Sendable ([UInt8]) -> [String]

    public init(name: String, summary: String, check: @escaping @Sendable ([UInt8]) -> [String]) {
        self.name = name
        self.summary = summary
        self.check = check
    }
}

public enum FuzzTargets {
    /// Every target, in the order Fuzz/run.sh runs them.
    public static let all: [FuzzTarget] = {
        #if DEBUG
        return [watchConf, controlRequest, workerChannel, notifyMessage, listenAddress, masterRecord, requestBoundary]
        #else
        return []
        #endif
    }()

    /// The target called `name`, if any.
    public static func named(_ name: String) -> FuzzTarget? { all.first { $0.name == name } }
}

/// Collects the properties an input broke.
struct Findings {
    private(set) var broken: [String] = []

    /// Records `message` unless `condition` holds.
    mutating func expect(_ condition: Bool, _ message: @autoclosure () -> String) {
        if !condition { broken.append(message()) }
    }

    /// Records a rejection (`what`) whose message says nothing: empty or blank.
    mutating func expectMessage(_ message: String, _ what: String) {
        expect(!message.allSatisfy(\.isWhitespace), "\(what): the error message is empty")
    }
}

extension String {
    /// The bytes as Baton reads a peer's text: invalid UTF-8 replaced, not refused.
    init(lossy bytes: some Collection<UInt8>) { self = String(decoding: bytes, as: UTF8.self) }
}

/// Hands out an input's bytes one decision at a time, for the targets that build structured input
/// (a request stream and its split) from libFuzzer's flat bytes; zeros once they run out.
struct ByteSource {
    private let bytes: [UInt8]
    private var position = 0
    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var isEmpty: Bool { position >= bytes.count }

    mutating func next() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    /// A number in `0..<bound`.
    mutating func next(below bound: Int) -> Int { Int(next()) % bound }
}
