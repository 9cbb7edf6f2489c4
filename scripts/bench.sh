#!/usr/bin/env bash
# Release build in its own scratch dir (so it does not fight the shared debug .build), then `nk3 bench`.
# Usage: scripts/bench.sh [--quick] [--scenario NAME…] [--json PATH]   (default JSON: bench-results.json)
# The agent is built with the Swift runtime linked in (--static-swift-stdlib, own scratch dir .build-static,
# since the flag changes every module's build settings): fewer resident pages than with the runtime .so
# files (BENCHMARKS.md). NK3_BENCH_DYNAMIC_AGENT=1 benches the dynamically linked one.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --scratch-path .build-release --product nk3
if [[ "${NK3_BENCH_DYNAMIC_AGENT:-0}" == 1 ]]; then
    agent_build=(-c release --scratch-path .build-release)
else
    agent_build=(-c release --static-swift-stdlib --scratch-path .build-static)
fi
swift build "${agent_build[@]}" --product nk3-agent
bin="$(swift build -c release --scratch-path .build-release --show-bin-path)"
agent="$(swift build "${agent_build[@]}" --show-bin-path)/nk3-agent"
args=("$@")
if [[ " ${args[*]-} " != *" --json "* ]]; then args+=(--json bench-results.json); fi
exec "$bin/nk3" bench --agent-binary "$agent" "${args[@]}"
