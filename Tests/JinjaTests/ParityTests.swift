import Foundation
import Testing

@testable import NK3Jinja

/// Parity with real Jinja2 3.1: every case of `Fixtures/parity.json` (rendered by
/// `scripts/gen-jinja-fixtures.py` from `Fixtures/cases.yaml`) must render byte for byte as Jinja2 rendered
/// it, or fail with the exception class Jinja2 raised.
@Suite("Jinja2 parity")
struct ParityTests {
    static let cases: [ParityCase] = (try? ParityCase.load()) ?? []

    @Test("the parity set is large and covers every feature group")
    func coverage() {
        #expect(Self.cases.count >= 150)
        let groups = Set(Self.cases.map { $0.name.split(separator: "-").first.map(String.init) ?? "" })
        for g in ["lit", "arith", "compare", "f", "t", "if", "for", "set", "with", "macro", "ws", "include", "err"] {
            #expect(groups.contains(g), "no case for \(g)")
        }
        #expect(Self.cases.filter { $0.error != nil }.count >= 30)
    }

    @Test("renders as Jinja2 does", arguments: cases)
    func parity(_ c: ParityCase) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nk3-jinja-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        if let problem = try c.mismatch(in: dir) {
            Issue.record("\(c.name): \(problem)")
        }
    }
}
