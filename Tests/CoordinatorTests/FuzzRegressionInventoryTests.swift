import Foundation
import NK3Coordinator
import Testing
import NK3Kube

/// Inputs that once crashed the inventory parser under fuzzing (scripts/fuzz.sh inventory), kept as plain
/// tests. The raw crashing inputs also live in Fuzz/regressions/inventory/ and are replayed through the
/// fuzz harness by AbuseFuzzCorpusTests.
@Suite("Fuzz regressions: inventory")
struct FuzzRegressionInventoryTests {
    static let base = """
        join_address: 10.0.0.1
        join_token: t
        nix_channel: nixos-24.05
        nodes:
          10.0.0.1:
            hostname: n1

        """

    /// YAML 1.1 reads `32222222222222222226:7` as a base-60 integer; Yams computed it with unchecked
    /// arithmetic and trapped on overflow (the fuzzer's input was exactly that line).
    @Test("a base-60 integer too large for Int is an error or a string, never a trap")
    func hugeSexagesimalIntegerDoesNotTrap() throws {
        let crash = try Data(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fuzz/regressions/inventory/big-integer-key.yaml"))
        #expect(throws: InventoryError.self) { try Inventory.parse(yaml: String(decoding: crash, as: UTF8.self), file: "i.yaml") }

        // As a value where an integer is expected: a clear wrong-type error naming the key.
        let error = #expect(throws: InventoryError.self) {
            try Inventory.parse(yaml: Self.base + "agent_port: 9223372036854775807:59\n", file: "i.yaml")
        }
        #expect(error?.key == "agent_port")
        // As a free hostvar: kept as the string it is.
        let inv = try Inventory.parse(
            yaml: Self.base.replacingOccurrences(of: "hostname: n1", with: "hostname: n1\n    big: 9223372036854775807:7"), file: "i.yaml")
        #expect(inv.nodes[0].hostvars.first { $0.key == "big" }?.value == .string("9223372036854775807:7"))
    }

    @Test("base-60 integers that fit are still read as PyYAML reads them (190:20:30 = 685230)")
    func sexagesimalIntegersStillParse() throws {
        let inv = try Inventory.parse(
            yaml: Self.base.replacingOccurrences(of: "hostname: n1", with: "hostname: n1\n    a: 190:20:30\n    b: -1:30\n    c: 1_0:00"),
            file: "i.yaml")
        let vars = inv.nodes[0].hostvars
        #expect(vars.first { $0.key == "a" }?.value == .int(685_230))
        #expect(vars.first { $0.key == "b" }?.value == .int(-90))
        #expect(vars.first { $0.key == "c" }?.value == .int(600))
        let port = try Inventory.parse(yaml: Self.base + "agent_port: 2:3\n", file: "i.yaml")
        #expect(port.agentPort == 123)
    }

    /// 1,746 nested `{` overflowed the stack in Yams' recursive node builder (the fuzzer's input, 1.7 KB).
    @Test("YAML nested past 64 levels is a syntax error naming the line, never a stack overflow")
    func deepNestingIsRefused() throws {
        let crash = try Data(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fuzz/regressions/inventory/deep-flow-nesting.yaml"))
        let error = #expect(throws: InventoryError.self) {
            try Inventory.parse(yaml: String(decoding: crash, as: UTF8.self), file: "i.yaml")
        }
        #expect(error?.code == .syntax)
        #expect(error?.message.contains("nests more than 64 levels") == true, "\(String(describing: error))")
        #expect(error?.line == 2)
        // The other ways to nest on one line or a few bytes: block sequences, explicit keys, indentation.
        for deep in [
            String(repeating: "- ", count: 2_000) + "x\n", String(repeating: "? ", count: 2_000) + "x\n",
            String(repeating: "[", count: 65), "a: " + String(repeating: "{b: ", count: 65),
            // 200 KB of `[`: deep enough to overflow any thread's stack without the bound.
            String(repeating: "[", count: 200_000),
            (0..<70).map { String(repeating: "  ", count: $0) + "k\($0):\n" }.joined(),
        ] {
            #expect(throws: YAMLNesting.TooDeep.self, "\(deep.prefix(40))") { try YAMLNesting.check(deep) }
            #expect(throws: InventoryError.self) { try Inventory.parse(yaml: Self.base + deep, file: "i.yaml") }
        }
        // And the same kubeconfig bytes.
        #expect(throws: (any Error).self) { try KubeConfig.parse(yaml: String(decoding: crash, as: UTF8.self), directory: "/nonexistent") }
    }

    @Test("what inventories really hold is not counted as nesting: quoted brackets, comments, Nix in block scalars, 64 levels")
    func ordinaryYAMLPasses() throws {
        let text = Self.base + """
            vars:
              note: 'it''s [[[[ not a list'
              other: "escaped \\" {{{{ still a string"
              # {{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{ a comment
              nix: |
                { config, ... }: { services.foo = { enable = true; settings = { a = { b = 1; }; }; }; }
              list: [a, [b, [c, {d: e}]]]
              plain: a - b - c don't

            """
        let inv = try Inventory.parse(yaml: text, file: "i.yaml")
        #expect(inv.nodes.count == 1)
        try YAMLNesting.check(String(repeating: "[", count: 64) + String(repeating: "]", count: 64))
        #expect(throws: YAMLNesting.TooDeep.self) {
            try YAMLNesting.check(String(repeating: "[", count: 65) + String(repeating: "]", count: 65))
        }
    }
}
