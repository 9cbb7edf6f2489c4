import Foundation
import NK3Coordinator
import Testing

/// `RolloutFlags`: the one builder of plan options, for `nk3 apply|upgrade|reboot` and `nk3 demo`.
@Suite struct RolloutFlagsTests {
    func inventory(_ extra: String) throws -> Inventory {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nk3-flags-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("inventory.yaml").path
        try """
            join_address: 10.0.0.1
            join_token: t
            nix_channel: nixos-24.05
            \(extra)
            nodes:
              10.0.0.1: {hostname: s1}
              10.0.0.2: {hostname: a1, role: agent}
              10.0.0.3: {hostname: a2, role: agent}

            """.write(toFile: path, atomically: true, encoding: .utf8)
        return try Inventory.load(path: path)
    }

    @Test("the inventory's order and budget count unless a flag says otherwise")
    func inventoryDefaults() throws {
        let inv = try inventory("disruption_budget: 2\norder: [a2]")
        let o = try RolloutFlags().planOptions(inv)
        #expect(o.disruptionBudget == 2)
        #expect(o.explicitOrder == ["a2", "s1", "a1"])
        let f = try RolloutFlags(disruptionBudget: 1, order: ["a1"], includeCordoned: true).planOptions(inv)
        #expect(f.disruptionBudget == 1 && f.explicitOrder == ["a1"] && f.includeCordoned)
        #expect(throws: CoordinatorError.self) { try RolloutFlags(disruptionBudget: 0).planOptions(inv) }
    }
}
