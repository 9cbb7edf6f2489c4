#!/usr/bin/env bash
# Release build in its own scratch dir (so it does not fight the shared debug .build), then `nk3 bench`.
# Usage: scripts/bench.sh [--quick] [--scenario NAME…] [--json PATH]   (default JSON: bench-results.json)
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --scratch-path .build-release --product nk3
swift build -c release --scratch-path .build-release --product nk3-agent
bin="$(swift build -c release --scratch-path .build-release --show-bin-path)"
args=("$@")
if [[ " ${args[*]-} " != *" --json "* ]]; then args+=(--json bench-results.json); fi
exec "$bin/nk3" bench --agent-binary "$bin/nk3-agent" "${args[@]}"
