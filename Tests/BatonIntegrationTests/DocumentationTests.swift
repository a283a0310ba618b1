#if os(Linux)
import Foundation
import XCTest

/// The documentation that must not go stale: the Getting started article and the README show what
/// `Examples/getting-started.sh` really prints, the CLI reference is what `baton help` prints, and
/// every relative link in the Markdown files resolves.
final class DocumentationTests: IntegrationTestCase {
    static let root = Locations.repositoryRoot
    static let gettingStarted = root.appendingPathComponent("Sources/Baton/Baton.docc/GettingStarted.md")
    static let cliReference = root.appendingPathComponent("Sources/Baton/Baton.docc/CLIReference.md")
    static let readme = root.appendingPathComponent("README.md")
    /// The port the article's run used: the script's default.
    static let articlePort: UInt16 = 18200

    /// Runs the walkthrough (it starts `hello`, upgrades it three ways, stops it) and compares its
    /// output, pids, times, ports, paths and hashes aside, with the article's output block (all of
    /// it, in order) and the README's excerpt (each line, in order).
    func testGettingStartedArticleAndREADMEShowWhatTheScriptPrints() throws {
        guard Locations.find("curl") != nil else { throw skipOrFail("curl is not installed (Debian package curl)") }
        let port = try freePort()
        let environment = cleanEnvironment(["HELLO": try Locations.product("hello"), "BATON": try Locations.product("baton"),
                                            "PORT": String(port)])
        let run = try runCommand("/bin/bash", [Self.root.appendingPathComponent("Examples/getting-started.sh").path],
                                 directory: directory, environment: environment, timeout: 180)
        XCTAssertEqual(run.exitCode, 0, "Examples/getting-started.sh: \(run)")
        let printed = Self.normalized(run.output, port: port)

        let article = try Self.block(after: "<!-- getting-started.sh output -->", in: Self.gettingStarted)
        let shown = Self.normalized(article, port: Self.articlePort)
        if shown != printed {
            let index = (0..<min(shown.count, printed.count)).first { shown[$0] != printed[$0] } ?? min(shown.count, printed.count)
            XCTFail("""
                GettingStarted.md's output block differs from what Examples/getting-started.sh prints, first at line \
                \(index + 1): the article shows \(index < shown.count ? "'\(shown[index])'" : "nothing more"), the script \
                printed \(index < printed.count ? "'\(printed[index])'" : "nothing more"). Run `PORT=\(Self.articlePort) bash \
                Examples/getting-started.sh` and put its output in the article (and the README's excerpt). Its output:
                \(run.output)
                """)
        }

        let excerpt = Self.normalized(try Self.block(after: "<!-- getting-started excerpt -->", in: Self.readme), port: Self.articlePort)
        var rest = printed[...]
        for line in excerpt {
            guard let found = rest.firstIndex(of: line) else {
                XCTFail("README.md's walkthrough line '\(line)' is not in what Examples/getting-started.sh printed (in order)")
                break
            }
            rest = rest[(found + 1)...]
        }
    }

    /// The CLI reference article is what `scripts/cli-reference.sh` makes of `baton help` now.
    func testCLIReferenceIsWhatBatonHelpPrints() throws {
        let generated = try runCommand("/bin/bash", [Self.root.appendingPathComponent("scripts/cli-reference.sh").path,
                                                     try Locations.product("baton")], directory: directory)
        XCTAssertEqual(generated.exitCode, 0, "\(generated)")
        let committed = try String(contentsOf: Self.cliReference, encoding: .utf8)
        XCTAssertEqual(generated.output, committed, """
            Sources/Baton/Baton.docc/CLIReference.md is not what `baton help` prints now: run \
            `bash scripts/cli-reference.sh .build/debug/baton > Sources/Baton/Baton.docc/CLIReference.md`
            """)
    }

    /// `scripts/check-links.sh`: every relative link in the repository's Markdown files resolves.
    func testEveryRelativeLinkResolves() throws {
        guard Locations.find("git") != nil else { throw skipOrFail("git is not installed (Debian package git)") }
        let check = try runCommand("/bin/bash", [Self.root.appendingPathComponent("scripts/check-links.sh").path], directory: directory)
        XCTAssertEqual(check.exitCode, 0, "\(check)")
    }

    // MARK: Reading and normalising

    /// The lines of the fenced code block that follows `marker` in `file`.
    static func block(after marker: String, in file: URL) throws -> String {
        let text = try String(contentsOf: file, encoding: .utf8)
        guard let markerRange = text.range(of: marker) else { throw TestError("\(file.lastPathComponent) has no '\(marker)'") }
        let lines = text[markerRange.upperBound...].split(separator: "\n", omittingEmptySubsequences: false).dropFirst()
        guard let open = lines.firstIndex(where: { $0.hasPrefix("```") }),
              let close = lines[(open + 1)...].firstIndex(where: { $0.hasPrefix("```") }) else {
            throw TestError("\(file.lastPathComponent): no fenced block after '\(marker)'")
        }
        return lines[(open + 1)..<close].joined(separator: "\n")
    }

    /// What may differ between two runs, replaced by a placeholder: the port, the demo folder,
    /// hashes, pids (also in `baton status`'s table), durations and sizes; JSON objects with their keys sorted (Foundation on
    /// Linux encodes them in any order); runs of spaces folded (column widths follow the values).
    static func normalized(_ text: String, port: UInt16) -> [String] {
        let rules: [(String, String)] = [
            (#"/tmp/baton-getting-started\.[A-Za-z0-9]+"#, "DEMO"),
            (#"\b[0-9a-f]{64}\b"#, "SHA256"),
            (#"\b[0-9a-f]{12}\b"#, "SHA"),
            (#"(pid[ =]|"pid": ?)[0-9]+"#, "$1N"),
            (#"\b[0-9]+(\.[0-9]+)? ?(ms|s)\b"#, "T"),
            (#"\b[0-9]+ bytes\b"#, "N bytes"),
            (#" +"#, " "),
            (#"^([0-9]+) [0-9]+ "#, "$1 N "),  // `baton status`: GEN PID VERSION …
        ]
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { raw in
            var line = String(raw).replacingOccurrences(of: String(port), with: "PORT")
            if line.hasPrefix("{"), let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)),
               let sorted = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) {
                line = String(decoding: sorted, as: UTF8.self)
            }
            for (pattern, template) in rules {
                line = line.replacingOccurrences(of: pattern, with: template, options: .regularExpression)
            }
            return line.trimmingCharacters(in: .whitespaces)
        }
        while lines.last?.isEmpty == true { lines.removeLast() }
        return lines
    }
}
#endif
