#!/usr/bin/env bash
# The whole test suite: Nix files parse, the package builds, our own sources build without warnings,
# and every test passes.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -f scripts/check-nix.sh ]; then
    echo "== nix: nix-instantiate --parse on every .nix file"
    bash scripts/check-nix.sh
fi

echo "== swift build --build-tests"
log=$(mktemp)
if ! swift build --build-tests >"$log" 2>&1; then
    grep -E "error:" "$log" | head -50 || tail -50 "$log"
    exit 1
fi
# Warnings in nk3's own sources fail the build (dependencies' warnings are theirs).
if grep -E "^$(pwd)/(Sources|Tests)/.*warning:" "$log"; then
    echo "error: warnings in nk3 sources (see above)"
    exit 1
fi

echo "== swift test"
# The suite takes minutes; a test left waiting on something that never comes must fail the run with its output,
# not hold it until an outer CI limit ends it silently. (Every test has its own, shorter, time limit too.)
timeout --kill-after=60 30m swift test --skip-build
