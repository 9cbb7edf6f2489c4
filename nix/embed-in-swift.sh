#!/usr/bin/env bash
# Rewrites Sources/Coordinator/Templates/NixAgentModule.swift from nix/module.nix and nix/agent-binary.nix:
# the coordinator ships both files to every node verbatim (as nk3-agent-module.nix and nk3-agent-binary.nix),
# and TemplateTests fails when the Swift copies differ from these files. Run it after editing either file.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$repo/Sources/Coordinator/Templates/NixAgentModule.swift"
for f in "$repo/nix/module.nix" "$repo/nix/agent-binary.nix"; do
    if grep -q '"""#' "$f"; then
        echo "embed-in-swift: $f contains \"\"\"#, which would end the Swift raw string" >&2
        exit 1
    fi
done
{
    cat <<'HEAD'
/// The Nix files the coordinator ships to every node next to the generated `nk3-agent.nix`: the agent's NixOS
/// module (`nk3-agent-module.nix`) and the derivation that packages the prebuilt agent binary
/// (`nk3-agent-binary.nix`). Byte-identical copies of `nix/module.nix` and `nix/agent-binary.nix`, written by
/// `nix/embed-in-swift.sh`; `TemplateTests` fails when they differ.
public enum NixAgentModule {
    /// The module's Nix source (byte-identical to `nix/module.nix`).
    public static let source = #"""
HEAD
    cat "$repo/nix/module.nix"
    printf '\n"""#\n\n'
    printf '    /// The prebuilt-binary derivation (byte-identical to `nix/agent-binary.nix`).\n'
    printf '    public static let binaryDerivation = #"""\n'
    cat "$repo/nix/agent-binary.nix"
    printf '\n"""#\n}\n'
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "embed-in-swift: wrote ${out#"$repo/"}"
