#!/usr/bin/env bash
# Instruction counts (Ir) of nk3's CPU-bound benchmark scenarios under valgrind's callgrind: repeatable on a
# shared machine where wall and CPU time move 10–25 % between runs. Use it for the before/after of every
# performance change (BENCHMARKS.md).
#
# Usage: scripts/bench-instructions.sh [--no-build] [--bin PATH/TO/nk3] [--keep DIR] [SCENARIO…]
#   SCENARIO: envelope, render, status, plan (default: all four). Each runs as
#   `nk3 bench --quick --scenario X` (status/plan at --sizes 10) in its own callgrind process; the figure is the
#   whole process's Ir (start-up included: the same in every run of one binary, so differences are the
#   scenario's).
# `perf stat -e instructions` is used instead when the machine exposes the hardware counter (this VM does not:
# "<not supported>"); callgrind counts the same instructions, 20–50× slower.
set -euo pipefail
cd "$(dirname "$0")/.."
build=1 bin="" keep=""
scenarios=()
while (($#)); do
    case "$1" in
        --no-build) build=0 ;;
        --bin) bin="$2"; shift ;;
        --keep) keep="$2"; shift ;;
        -h|--help) sed -n 2,12p "$0"; exit 0 ;;
        *) scenarios+=("$1") ;;
    esac
    shift
done
((${#scenarios[@]})) || scenarios=(envelope render status plan)
if [[ -z "$bin" ]]; then
    ((build)) && swift build -c release --scratch-path .build-release --product nk3 >&2
    bin="$(swift build -c release --scratch-path .build-release --show-bin-path)/nk3"
fi
[[ -x "$bin" ]] || { echo "no nk3 binary at $bin" >&2; exit 1; }
out="${keep:-$(mktemp -d)}"
mkdir -p "$out"
[[ -n "$keep" ]] || trap 'rm -rf "$out"' EXIT

use_perf=0
if command -v perf >/dev/null && perf stat -x, -e instructions true 2>&1 | grep -q '^[0-9]'; then use_perf=1; fi
if ((!use_perf)) && ! command -v valgrind >/dev/null; then
    echo "neither perf with an instructions counter nor valgrind is available (apt-get install valgrind)" >&2
    exit 1
fi

printf '%-10s %18s  %s\n' scenario instructions "tool, command"
for s in "${scenarios[@]}"; do
    case "$s" in
        envelope|render) args=(bench --quick --scenario "$s") ;;
        status|plan) args=(bench --quick --scenario "$s" --sizes 10) ;;
        *) echo "unknown scenario $s (envelope, render, status, plan)" >&2; exit 2 ;;
    esac
    if ((use_perf)); then
        ir=$(perf stat -x, -e instructions -- "$bin" "${args[@]}" 2>&1 >/dev/null | awk -F, '/instructions/ {print $1}')
        tool=perf
    else
        # valgrind 3.19 cannot read this toolchain's DWARF 5: run a copy without debug info (the symbol table
        # stays, so callgrind_annotate still names functions). One total for every thread of the process.
        [[ -x "$out/nk3" ]] || objcopy --strip-debug "$bin" "$out/nk3"
        valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.$s.out" "$out/nk3" "${args[@]}" \
            >"$out/$s.stdout" 2>"$out/$s.valgrind" || { tail -20 "$out/$s.valgrind" >&2; exit 1; }
        ir=$(awk '/^summary:|^totals:/ {print $2; exit}' "$out/callgrind.$s.out")
        tool=callgrind
    fi
    printf '%-10s %18s  %s\n' "$s" "$(printf "%'d" "$ir" 2>/dev/null || echo "$ir")" "$tool: nk3 ${args[*]}"
done
[[ -z "$keep" ]] || echo "callgrind files in $out (callgrind_annotate --inclusive=yes FILE | swift demangle)" >&2
