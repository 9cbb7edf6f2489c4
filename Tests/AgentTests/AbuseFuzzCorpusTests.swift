import Foundation
import NK3Protocol
import Testing

/// Replays every committed fuzz seed (Fuzz/corpus/TARGET) and every input that once crashed a harness
/// (Fuzz/regressions/TARGET) through the same harness functions the libFuzzer binary runs
/// (Support/AbuseFuzzHarness.swift is the harness source, shared with Fuzz/). This is the CI-cheap part of
/// fuzzing; the real runs are `scripts/fuzz.sh` (docs/RELIABILITY.md). A crash here is a test failure.
@Suite("Abuse: fuzz corpora replay through the harness")
struct AbuseFuzzCorpusTests {
    static let fuzzRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fuzz")

    static func inputs(_ folder: String, _ target: String) -> [URL] {
        let dir = fuzzRoot.appendingPathComponent(folder).appendingPathComponent(target)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return names.sorted().filter { !$0.hasPrefix(".") }.map { dir.appendingPathComponent($0) }
    }

    @Test("every target has a seed corpus and survives it and its regression inputs", arguments: NK3Fuzz.targets)
    func replay(target: String) async throws {
        let seeds = Self.inputs("corpus", target)
        #expect(seeds.count >= 2, "Fuzz/corpus/\(target) needs seeds (python3 Fuzz/tools/make-seeds.py)")
        for url in seeds + Self.inputs("regressions", target) {
            await NK3Fuzz.runAsync(target, try Data(contentsOf: url))
        }
    }

    @Test("the envelope seeds are signed by the harness key, so fuzzing reaches payload decoding")
    func envelopeSeedsPassTheSignatureCheck() throws {
        let dir = Self.fuzzRoot.appendingPathComponent("corpus/envelope")
        func verify(_ name: String) throws -> Result<CommandPayload, EnvelopeError> {
            let data = try Data(contentsOf: dir.appendingPathComponent(name))
            return Result { () throws(EnvelopeError) in
                try NK3Fuzz.verifier.verify(envelopeJSON: data, lastAcceptedSerial: NK3Fuzz.lastSerial, now: NK3Fuzz.now)
            }
        }
        for name in ["apply.json", "apply-upgrade.json", "confirm.json", "reboot.json", "rollback.json"] {
            #expect(throws: Never.self, "\(name)") { try verify(name).get() }
        }
        #expect(throws: EnvelopeError.replayedSerial(serial: 3, lastAccepted: 10)) { try verify("replayed.json").get() }
        #expect(throws: EnvelopeError.badSignature) { try verify("bad-signature.json").get() }
        #expect((try? verify("other-node.json").get()) == nil)
        #expect((try? verify("expired.json").get()) == nil)
        #expect((try? verify("bad-bundle.json").get()) == nil)
    }
}
