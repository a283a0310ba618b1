#if DEBUG
@testable import Baton
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension FuzzTargets {
    /// The record a master hands to its next image across `execve` (JSON in a memfd).
    static let masterRecord = FuzzTarget(
        name: "master-record",
        summary: "record bytes → MasterRecord.decode: a masterHandover error that says why, or a record that encodes and decodes to itself and that the check and the adoption read without a crash (plans, listen addresses, states, ages)",
        check: checkMasterRecord)

    static func checkMasterRecord(_ bytes: [UInt8]) -> [String] {
        var findings = Findings()
        let record: MasterRecord
        do {
            record = try MasterRecord.decode(bytes)
        } catch BatonError.masterHandover(let why) {
            findings.expectMessage(why, "master record rejection")
            return findings.broken
        } catch {
            return ["threw \(error) instead of BatonError.masterHandover"]
        }
        findings.expect(record.format == MasterRecord.formatName && record.version <= MasterRecord.currentVersion,
                        "format \(record.format) version \(record.version) accepted")
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let again = try MasterRecord.decode(Array(encoder.encode(record)))
            findings.expect(again == record, "does not decode back to itself")
        } catch {
            findings.expect(false, "its own encoding is refused: \(error)")
        }
        // What MasterCheck.answerIfAsked parses before an exec, and MasterRecord.adopted after it.
        for plan in record.generations.map(\.plan) + [record.currentPlan, record.previousPlan].compactMap({ $0 }) {
            _ = try? plan.launchPlan()
        }
        for listener in record.listeners { _ = try? listener.address.map { try ListenAddress(parsing: $0) } }
        // Ages become instants in this image, and ages again in the record of the next one.
        let ages = [record.image.processAge] + record.generations.flatMap { [$0.age, $0.readyAge, $0.drainAge].compactMap { $0 } }
        for age in ages { _ = MasterRecord.age(record.instant(age: age), now: .now) }
        for entry in record.generations { _ = Generation.State(rawValue: entry.state) }
        _ = record.lastUpgrade?.outcome
        // An adopting master renumbers it by the keeper's names (issue 24): each name to a
        // descriptor number of its own, one name left out to exercise the refusals.
        if let names = record.keeper?.names {
            var kit: [String: Int32] = [:]
            for (index, name) in names.keys.sorted().enumerated() where index != 1 { kit[name] = Int32(100 + index) }
            do {
                let (renumbered, lost) = try record.renumbered(by: kit)
                let given = Set(kit.values)
                findings.expect(renumbered.listeners.allSatisfy { given.contains($0.fd) } && given.contains(renumbered.notify.fd),
                                "renumbered to a descriptor the keeper did not give")
                findings.expect(renumbered.generations.count + lost.count == record.generations.count, "generations neither kept nor lost")
                findings.expect(renumbered.keeper == nil, "the renumbered record keeps the dead master's keeper table")
            } catch BatonError.masterHandover(let why) {
                findings.expectMessage(why, "renumbering rejection")
            } catch {
                findings.expect(false, "renumbering threw \(error) instead of BatonError.masterHandover")
            }
        }
        return findings.broken
    }
}
#endif
