import Foundation
import NK3Agent
import Testing

/// `nixos-rebuild` output that trapped the plan parser (an agent crash in the middle of an apply), kept as
/// plain tests; the raw inputs are in Fuzz/regressions/rebuild-output/ and replayed through the harness.
@Suite("Fuzz regressions: nixos-rebuild output")
struct FuzzRegressionRebuildOutputTests {
    @Test("counts that add up past Int.max saturate instead of trapping")
    func hugeCountsSaturate() {
        let r = RebuildOutputParser.counts(
            in: "these 9223372036854775807 derivations will be built:\nthese 1 derivations will be built:\n"
                + "these 9223372036854775807 paths will be fetched (1 MiB download):\nthis path will be fetched (1 MiB download):\n")
        #expect(r.derivations == Int.max)
        #expect(r.paths == Int.max)
    }

    @Test("a negative count is not a count: the listed store paths are counted instead")
    func negativeCountIsIgnored() {
        let r = RebuildOutputParser.counts(in: "these -5 derivations will be built:\n  /nix/store/a.drv\n  /nix/store/b.drv\n")
        #expect(r.derivations == 2)
        #expect(r.paths == nil)
    }

    @Test("ordinary output is counted as before (docs/UPSTREAM.md#nixos-rebuild)")
    func ordinaryOutput() {
        let r = RebuildOutputParser.counts(
            in: "these 3 derivations will be built:\n  /nix/store/a.drv\n  /nix/store/b.drv\n  /nix/store/c.drv\n"
                + "these 12 paths will be fetched (3.20 MiB download, 15.01 MiB unpacked):\n  /nix/store/d\n")
        #expect(r.derivations == 3)
        #expect(r.paths == 12)
    }
}
