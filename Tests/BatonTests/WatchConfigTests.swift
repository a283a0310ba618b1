import Foundation
import XCTest
@testable import Baton

final class WatchConfigTests: XCTestCase {
    private func parse(_ text: String) throws -> WatchConfig {
        try WatchConfig.parse(Data(text.utf8), path: "/srv/app/watch.conf")
    }

    private func assertError(_ text: String, key: String?, contains fragment: String, line: UInt = #line) {
        XCTAssertThrowsError(try parse(text), line: line) { error in
            guard let error = error as? WatchConfigError else { return XCTFail("\(error)", line: line) }
            XCTAssertEqual(error.key, key, "\(error)", line: line)
            XCTAssertEqual(error.path, "/srv/app/watch.conf", line: line)
            XCTAssertTrue(error.description.contains(fragment), "\(error)", line: line)
        }
    }

    func testTheSeedFormat() throws {
        let config = try parse(#"{"HttpPort":"8080","Ver":"2","DelaySecond":5,"BinName":"app"}"#)
        XCTAssertEqual(config, WatchConfig(httpPort: 8080, version: "2", delaySeconds: 5, binName: "app"))
    }

    func testPortAsANumberAndFractionalDelay() throws {
        let config = try parse(#"{"HttpPort":9090,"Ver":"1.2.3-rc1","DelaySecond":0.5,"BinName":"app"}"#)
        XCTAssertEqual(config.httpPort, 9090)
        XCTAssertEqual(config.delaySeconds, 0.5)
        XCTAssertEqual(config.version, "1.2.3-rc1")
    }

    func testEveryBadInputNamesTheKeyAndWhatWasExpected() {
        assertError("{", key: nil, contains: "is not valid JSON")
        assertError("[1]", key: nil, contains: "must be a JSON object")
        assertError(#"{"HttpPort":"8080","Ver":"2","DelaySecond":5}"#, key: "BinName", contains: "is missing")
        assertError(#"{"HttpPort":"8080","Ver":"2","DelaySecond":5,"BinName":"app","Sha":"x"}"#, key: "Sha", contains: "is not a known key")
        assertError(#"{"HttpPort":"http","Ver":"2","DelaySecond":5,"BinName":"app"}"#, key: "HttpPort", contains: "port number")
        assertError(#"{"HttpPort":true,"Ver":"2","DelaySecond":5,"BinName":"app"}"#, key: "HttpPort", contains: "port number")
        assertError(#"{"HttpPort":"70000","Ver":"2","DelaySecond":5,"BinName":"app"}"#, key: "HttpPort", contains: "from 1 to 65535")
        assertError(#"{"HttpPort":"8080","Ver":2,"DelaySecond":5,"BinName":"app"}"#, key: "Ver", contains: "must be a non-empty string")
        assertError(#"{"HttpPort":"8080","Ver":"a b","DelaySecond":5,"BinName":"app"}"#, key: "Ver", contains: "letters, digits")
        assertError(#"{"HttpPort":"8080","Ver":"2","DelaySecond":-1,"BinName":"app"}"#, key: "DelaySecond", contains: "from 0 to 3600")
        assertError(#"{"HttpPort":"8080","Ver":"2","DelaySecond":99999,"BinName":"app"}"#, key: "DelaySecond", contains: "from 0 to 3600")
        assertError(#"{"HttpPort":"8080","Ver":"2","DelaySecond":"5","BinName":"app"}"#, key: "DelaySecond", contains: "number of seconds")
        assertError(#"{"HttpPort":"8080","Ver":"2","DelaySecond":5,"BinName":""}"#, key: "BinName", contains: "non-empty")
        assertError(#"{"HttpPort":"8080","Ver":"2","DelaySecond":5,"BinName":"app","Sha256":"abc"}"#, key: "Sha256", contains: "64 hex digits")
    }

    func testOptionalSha256() throws {
        let sha = String(repeating: "Ab", count: 32)
        let config = try parse(#"{"HttpPort":"8080","Ver":"2","DelaySecond":5,"BinName":"app","Sha256":"\#(sha)"}"#)
        XCTAssertEqual(config.sha256, sha.lowercased())
    }

    func testOptionalCanary() throws {
        let seed = #""HttpPort":"8080","Ver":"2","DelaySecond":5,"BinName":"app""#
        let config = try parse(#"{\#(seed),"Canary":{"Percent":10,"Seconds":60}}"#)
        XCTAssertEqual(config.canary, CanarySettings(percent: 10, window: .seconds(60)))
        let tuned = try parse(#"{\#(seed),"Canary":{"Percent":5,"Seconds":1.5,"MinRequests":0,"MaxErrorRateIncrease":0.002,"MaxP99Ratio":2,"P99MarginMs":3}}"#)
        XCTAssertEqual(tuned.canary, CanarySettings(percent: 5, window: .milliseconds(1500), minRequests: 0, maxErrorRateIncrease: 0.002,
                                                    maxP99Ratio: 2, p99Margin: .milliseconds(3)))
        XCTAssertNil(try parse(#"{\#(seed)}"#).canary)
        assertError(#"{\#(seed),"Canary":10}"#, key: "Canary", contains: "must be an object")
        assertError(#"{\#(seed),"Canary":{"Percent":10}}"#, key: "Canary", contains: "needs Percent (1…50) and Seconds (1…3600)")
        assertError(#"{\#(seed),"Canary":{"Percent":60,"Seconds":10}}"#, key: "Canary.Percent", contains: "whole number from 1.0 to 50.0")
        assertError(#"{\#(seed),"Canary":{"Percent":2.5,"Seconds":10}}"#, key: "Canary.Percent", contains: "whole number")
        assertError(#"{\#(seed),"Canary":{"Percent":10,"Seconds":"60"}}"#, key: "Canary.Seconds", contains: "number from 1.0 to 3600.0")
        assertError(#"{\#(seed),"Canary":{"Percent":10,"Seconds":60,"Percnet":3}}"#, key: "Canary.Percnet", contains: "is not a known key")
        assertError(#"{\#(seed),"Canary":{"Percent":10,"Seconds":60,"MaxP99Ratio":0.5}}"#, key: "Canary.MaxP99Ratio", contains: "from 1.0")
    }

    func testAMissingFileSaysSo() {
        XCTAssertThrowsError(try WatchConfig.load(path: "/nonexistent/watch.conf")) { error in
            XCTAssertTrue("\(error)".hasPrefix("/nonexistent/watch.conf cannot be read"), "\(error)")
        }
    }
}
