#!/usr/bin/env bash
# Parse-checks every .nix file of the repository, plus any extra files given as arguments (for example
# configurations rendered by `nk3 plan`), with `nix-instantiate --parse`. Fails if any file does not parse.
#
# Parsing is all that can be checked without a nixpkgs checkout: evaluation against nixpkgs, the Nix build
# and the VM test need Nix with nixpkgs (see docs/DEPLOYING.md, "Building and testing with Nix").
# On Debian: apt-get install -y nix-bin   (provides nix-instantiate).
#
# Usage: scripts/check-nix.sh [extra.nix ...]
set -euo pipefail

if ! command -v nix-instantiate >/dev/null 2>&1; then
    echo "check-nix: nix-instantiate not found. Install Nix (Debian: apt-get install -y nix-bin)." >&2
    exit 2
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

files=()
# Tracked and untracked-but-not-ignored .nix files when in a git checkout; otherwise a plain find that
# skips build and VCS directories.
if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    while IFS= read -r -d '' f; do
        [ -f "$repo/$f" ] && files+=("$repo/$f")
    done < <(git -C "$repo" ls-files -z --cached --others --exclude-standard -- '*.nix')
else
    while IFS= read -r -d '' f; do
        files+=("$f")
    done < <(find "$repo" \( -name .build -o -name .git -o -name .swiftpm \) -prune -o -name '*.nix' -type f -print0)
fi
for extra in "$@"; do
    if [ ! -f "$extra" ]; then
        echo "check-nix: $extra: no such file" >&2
        exit 2
    fi
    files+=("$extra")
done

if [ "${#files[@]}" -eq 0 ]; then
    echo "check-nix: no .nix files found under $repo" >&2
    exit 1
fi

failed=0
for f in "${files[@]}"; do
    # --parse only reads the file: no evaluation, no store access, no network.
    if out="$(nix-instantiate --parse "$f" 2>&1 >/dev/null)"; then
        echo "ok     ${f#"$repo/"}"
    else
        echo "FAILED ${f#"$repo/"}" >&2
        printf '%s\n' "$out" | sed 's/^/       /' >&2
        failed=$((failed + 1))
    fi
done

if [ "$failed" -ne 0 ]; then
    echo "check-nix: $failed of ${#files[@]} file(s) failed to parse" >&2
    exit 1
fi
echo "check-nix: all ${#files[@]} file(s) parse"
