import NK3Common

/// Reads nix's build plan out of `nixos-rebuild` output (NixOS/nix src/libmain/shared.cc `printMissing`).
///
/// Wordings handled:
/// - current: `these N derivations will be built:` / `this derivation will be built:`,
///   `these N paths will be fetched (X download, Y unpacked):` / `this path will be fetched (…):`
/// - Nix ≤ 2.3: `these derivations will be built:` / `these paths will be fetched (…):` with no count —
///   the indented `/nix/store/…` lines that follow are counted instead.
public enum RebuildOutputParser {
    /// (derivations to build, paths to fetch); nil where nix printed no such plan.
    public static func counts(in output: String) -> (derivations: Int?, paths: Int?) {
        var derivations: Int?
        var paths: Int?
        enum Counting { case none, derivations, paths }
        var counting = Counting.none
        for raw in output.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = raw.trimming(where: { $0 == "\r" })
            if counting != .none {
                if line.hasPrefix("  /nix/store/") || line.hasPrefix("  ") && line.contains("/nix/store/") {
                    if counting == .derivations { derivations = add(derivations, 1) } else { paths = add(paths, 1) }
                    continue
                }
                counting = .none
            }
            let t = line.trimming(where: \.isHorizontalWhitespace)
            if t.hasPrefix("this derivation will be built") {
                derivations = add(derivations, 1)
            } else if t.hasPrefix("this path will be fetched") {
                paths = add(paths, 1)
            } else if t.hasPrefix("these ") {
                let words = t.split(separator: " ")
                guard words.count >= 2 else { continue }
                let isDerivations = t.contains(" will be built")
                let isPaths = t.contains(" will be fetched")
                guard isDerivations || isPaths else { continue }
                if let n = Int(words[1]), n >= 0 {
                    if isDerivations { derivations = add(derivations, n) } else { paths = add(paths, n) }
                } else {
                    // Nix ≤ 2.3: no count in the header; count the listed store paths.
                    counting = isDerivations ? .derivations : .paths
                    if isDerivations { derivations = derivations ?? 0 } else { paths = paths ?? 0 }
                }
            }
        }
        return (derivations, paths)
    }

    /// `count + n`, saturating: counts from hostile or garbled output must not trap (found by fuzzing,
    /// Fuzz/regressions/rebuild-output/).
    private static func add(_ count: Int?, _ n: Int) -> Int {
        let (sum, overflow) = (count ?? 0).addingReportingOverflow(n)
        return overflow ? Int.max : sum
    }
}
