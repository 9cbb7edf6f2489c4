#!/usr/bin/env bash
# Fuzzes nk3's decoders with libFuzzer (see docs/RELIABILITY.md, "Fuzzing").
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     default: 60 s for every target
#
# Builds the separate fuzz package (Fuzz/Package.swift) into .build-fuzz with
# -sanitize=fuzzer,address (release, so that it runs fast), then runs each target for SECONDS on its
# committed seeds (Fuzz/corpus/TARGET) plus a working corpus kept in .build-fuzz/corpus/TARGET, and prints
# executions per target. A crash, a trap, a sanitizer report, a leak or a 10 s hang writes the input to
# .build-fuzz/artifacts/TARGET/ and makes this script exit 1: add that input to Fuzz/regressions/TARGET/
# (the normal test suite replays it) and fix the bug.
#
# Environment: FUZZ_PARALLEL=N runs N targets at once (default 1); FUZZ_RUNS=N runs N inputs per target
# instead of a time limit (a CI smoke run: FUZZ_RUNS=1000 scripts/fuzz.sh); FUZZ_SKIP_BUILD=1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${1:-60}
shift || true
ALL=(envelope payload agent-http inventory kubeconfig kube-models kube-watch rebuild-output agent-config agent-responses jinja)
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL[@]}")
SCRATCH=$ROOT/.build-fuzz

if [ "${FUZZ_SKIP_BUILD:-0}" != 1 ]; then
    # The fuzz package resolves the same versions as the main package.
    [ -f Package.resolved ] && cp Package.resolved Fuzz/Package.resolved
    echo "building the fuzz harness (first build: several minutes)..." >&2
    (cd Fuzz && swift build --scratch-path "$SCRATCH" -c release --product nk3-fuzz \
        -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -enable-testing) >&2
fi
BIN=$SCRATCH/release/nk3-fuzz
[ -x "$BIN" ] || BIN=$(ls "$SCRATCH"/*/release/nk3-fuzz 2>/dev/null | head -1)
[ -x "$BIN" ] || { echo "no fuzz binary under $SCRATCH: run without FUZZ_SKIP_BUILD" >&2; exit 1; }

run_one() {
    local t=$1
    local work=$SCRATCH/corpus/$t art=$SCRATCH/artifacts/$t log=$SCRATCH/logs/$t.log
    mkdir -p "$work" "$art" "$(dirname "$log")"
    local limit=(-max_total_time="$SECS")
    [ -n "${FUZZ_RUNS:-}" ] && limit=(-runs="$FUZZ_RUNS")
    # agent-http awaits the server's async respond(to:) from the synchronous callback; the Task is freed
    # after the callback returns, so libFuzzer's malloc/free balance check would run a full leak scan on
    # every input (30x slower). ASan still checks every access; leaks are left to the other targets.
    local leaks=1
    [ "$t" = agent-http ] && leaks=0
    local rc=0
    # SWIFT_BACKTRACE off: the Swift runtime backtracer trips ASan after a trap; libFuzzer prints the stack.
    SWIFT_BACKTRACE=enable=no NK3_FUZZ_TARGET=$t "$BIN" "${limit[@]}" -detect_leaks=$leaks -timeout=10 -rss_limit_mb=4096 \
        -max_len=65536 -print_final_stats=1 -artifact_prefix="$art/" "$work" "$ROOT/Fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
    local execs
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    printf '%-16s %12s executions  %s\n' "$t" "${execs:-?}" "$([ $rc -eq 0 ] && echo ok || echo "FAILED (rc=$rc, see $log and $art)")"
    return $rc
}

export -f run_one
export SCRATCH ROOT SECS BIN FUZZ_RUNS
printf '%s\n' "${TARGETS[@]}" | xargs -P "${FUZZ_PARALLEL:-1}" -I{} bash -c 'run_one "$@"' _ {} | tee "$SCRATCH/summary.txt"
status=${PIPESTATUS[1]}
total=$(awk '{s += $2} END {print s}' "$SCRATCH/summary.txt")
echo "total executions: $total"
[ "$status" -eq 0 ] || { echo "some target failed: see .build-fuzz/logs and .build-fuzz/artifacts" >&2; exit 1; }
