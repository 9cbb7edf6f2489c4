#!/usr/bin/env bash
# Checks that a release nk3-agent carries no test kill points (issue 16 item 7), and that the check can see
# them at all: the debug build, which has them, must fail the same test.
#
#   scripts/check-release-hooks.sh [RELEASE_BINARY [DEBUG_BINARY]]
#
# Without arguments it builds the release agent first (`swift build -c release --product nk3-agent`, in
# .build-release-check so that it does not disturb .build) and uses .build/debug/nk3-agent as the debug one.
#
# What this proves: the release binary contains neither the environment variable's name, nor the kill point's
# message, nor the `TestKillPoints.killAt` symbol; so no code path in it can read NK3_AGENT_TEST_KILL_AT.
# The kill points are compiled in only under NK3_TEST_HOOKS, which Package.swift defines for the debug
# configuration alone (Sources/Agent/Engine/TestKillPoints.swift).
set -euo pipefail
cd "$(dirname "$0")/.."

release=${1:-}
debug=${2:-.build/debug/nk3-agent}
if [ -z "$release" ]; then
    swift build -c release --product nk3-agent --build-path .build-release-check
    release=.build-release-check/release/nk3-agent
fi

needles=("NK3_AGENT_TEST_KILL_AT" "test kill point: SIGKILL")
symbol="14TestKillPointsO6killAt"   # mangled NK3Agent.TestKillPoints.killAt

found() {  # found BINARY → prints what of the kill points it carries
    # grep reads to the end (no -q): with pipefail, `grep -q` quitting at the first match made strings/nm die of
    # SIGPIPE on a large binary and the pipeline count as "not found".
    local bin=$1 n
    for n in "${needles[@]}"; do
        if strings -a "$bin" | grep -F -- "$n" >/dev/null; then echo "string '$n'"; fi
    done
    if nm "$bin" 2>/dev/null | grep -F -- "$symbol" >/dev/null; then echo "symbol TestKillPoints.killAt"; fi
}

if [ ! -x "$debug" ]; then
    echo "error: no debug build at $debug (swift build --product nk3-agent): cannot show that the check can fail" >&2
    exit 2
fi
in_debug=$(found "$debug")
if [ -z "$in_debug" ]; then
    echo "error: the debug build $debug shows no kill points either: this check would prove nothing" >&2
    exit 2
fi
echo "debug   $debug: has $(echo "$in_debug" | paste -sd, -) (expected)"

in_release=$(found "$release")
if [ -n "$in_release" ]; then
    echo "FAIL    $release: has $(echo "$in_release" | paste -sd, -)" >&2
    exit 1
fi
echo "release $release: no kill-point strings or symbols (ok)"
