// `baton-fuzz`: the fuzz targets of BatonFuzzTargets behind libFuzzer, or a replay of files.
//
// Built by Fuzz/run.sh with `--sanitize=fuzzer -Xswiftc -DBATON_LIBFUZZER`, libFuzzer provides
// `main` and calls `LLVMFuzzerTestOneInput` with each input, for the target named by
// BATON_FUZZ_TARGET. Built plainly (every `swift build`), it is a replayer with a `main` of its
// own: `baton-fuzz TARGET FILE|FOLDER...` runs each file through the target and reports what
// broke, the way to check a crash file libFuzzer left without building for it.
import BatonFuzzTargets
#if canImport(Glibc)
import Glibc
#endif

/// Writes to standard error (`stderr` itself is shared mutable state to Swift 6).
func printError(_ text: String) {
    var text = text
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

#if BATON_LIBFUZZER

/// The target of this run, set once before the first input.
nonisolated(unsafe) private var selected: FuzzTarget?

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    let name = getenv("BATON_FUZZ_TARGET").map { String(cString: $0) } ?? ""
    guard let target = FuzzTargets.named(name) else {
        let names = FuzzTargets.all.map(\.name).joined(separator: ", ")
        printError("baton-fuzz: set BATON_FUZZ_TARGET to one of: \(names) (not '\(name)')\n")
        exit(2)
    }
    selected = target
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let target = selected else { return 0 }
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    let broken = target.check(bytes)
    if !broken.isEmpty {
        // libFuzzer saves the input as crash-… when the process aborts.
        printError("baton-fuzz \(target.name): \(broken.count) propert\(broken.count == 1 ? "y" : "ies") broken:\n")
        for problem in broken { printError("  - \(problem)\n") }
        abort()
    }
    return 0
}

#else

@main
struct BatonFuzz {
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        guard let name = arguments.first, name != "--list", name != "-h", name != "--help" else {
            print("usage: baton-fuzz TARGET FILE|FOLDER...   (Fuzz/run.sh runs them under libFuzzer)\n\ntargets:")
            for target in FuzzTargets.all { print("  \(target.name): \(target.summary)") }
            if FuzzTargets.all.isEmpty { print("  none: the targets need a debug build") }
            exit(arguments.isEmpty ? 2 : 0)
        }
        guard let target = FuzzTargets.named(name) else {
            printError("baton-fuzz: no target '\(name)' (--list names them)\n")
            exit(2)
        }
        var failed = 0
        var count = 0
        for path in arguments.dropFirst().flatMap(files(at:)) {
            guard let bytes = contents(of: path) else {
                printError("baton-fuzz: cannot read \(path)\n")
                exit(2)
            }
            count += 1
            let broken = target.check(bytes)
            if !broken.isEmpty {
                failed += 1
                print("\(path): \(broken.joined(separator: "; "))")
            }
        }
        print("\(target.name): \(count) input(s), \(failed) broke a property")
        exit(failed == 0 ? 0 : 1)
    }

    /// `path` itself, or the files in the folder `path`.
    static func files(at path: String) -> [String] {
        guard let folder = opendir(path) else { return [path] }
        defer { closedir(folder) }
        var names: [String] = []
        while let entry = readdir(folder) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if !name.hasPrefix(".") { names.append("\(path)/\(name)") }
        }
        return names.sorted()
    }

    static func contents(of path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = read(fd, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { return nil }
            if count == 0 { return bytes }
            bytes += buffer[0..<count]
        }
    }
}

#endif
