#!/usr/bin/env bash
# Locks nk3's SwiftPM dependencies for Nix: writes nix/swiftpm/{default.nix,workspace-state.json}, which
# nix/package.nix reads to fetch every dependency with fetchgit (the Nix build sandbox has no network).
#
# NEEDS NETWORK and Nix. Run it on a machine with Nix after any change to Package.swift / Package.resolved,
# then commit nix/swiftpm/:
#
#   nix/update-swiftpm-lock.sh            # uses swift and swiftpm2nix from PATH, else from `nix develop`
#   git add nix/swiftpm && git commit -m "Lock SwiftPM dependencies for Nix"
#
# What it does:
#  1. copies Package.swift and Package.resolved into a scratch directory (so the repository's own .build is
#     left alone) and runs `swift package resolve` there, which checks out exactly the revisions pinned in
#     Package.resolved and writes .build/workspace-state.json;
#  2. runs swiftpm2nix there, which prefetches every checkout with nurl/fetchgit (with submodules) and
#     writes nix/default.nix (the hashes) and nix/workspace-state.json (artifacts cleared);
#  3. moves both to nix/swiftpm/ in the repository.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$repo/nix/swiftpm"

# Without the tools on PATH, re-run this script inside the flake's dev shell (same nixpkgs as the build).
if ! command -v swiftpm2nix >/dev/null 2>&1 || ! command -v swift >/dev/null 2>&1; then
    if [ -n "${NK3_LOCK_IN_DEVSHELL:-}" ]; then
        echo "update-swiftpm-lock: swift/swiftpm2nix still missing inside the dev shell" >&2
        exit 1
    fi
    echo "-- entering the nk3 dev shell (nix develop) for swift, swiftpm2nix, nurl, jq" >&2
    NK3_LOCK_IN_DEVSHELL=1 exec nix --extra-experimental-features 'nix-command flakes' \
        develop "$repo" -c "$0" "$@"
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

cp "$repo/Package.swift" "$repo/Package.resolved" "$scratch/"
# `swift package resolve` compiles the manifest, which refers to target paths; empty placeholders are enough.
( cd "$repo" && find Sources Tests -type d ) | while read -r d; do mkdir -p "$scratch/$d"; done

cd "$scratch"
echo "-- swift package resolve (network)" >&2
swift package resolve
echo "-- swiftpm2nix (prefetching every dependency; network)" >&2
swiftpm2nix

test -f nix/default.nix && test -f nix/workspace-state.json || {
    echo "update-swiftpm-lock: swiftpm2nix did not produce nix/default.nix and nix/workspace-state.json" >&2
    exit 1
}

mkdir -p "$out"
cp nix/default.nix nix/workspace-state.json "$out/"
echo "-- wrote $out/default.nix and $out/workspace-state.json; check and commit them" >&2
