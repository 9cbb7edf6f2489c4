#!/usr/bin/env python3
"""Code size per Swift module in a binary: the sizes `nm -S` gives each symbol, summed by the module name in the
symbol's Swift mangling ($s<length><Module>...). With two binaries, lists the modules only the first one has.

    scripts/module-sizes.py BINARY [OTHER_BINARY]

BENCHMARKS.md ("Two small HTTP clients beside async-http-client") uses it to measure what linking
async-http-client would add to nk3-agent: scripts/module-sizes.py .build-release/release/nk3 .build-release/release/nk3-agent
"""
import collections
import re
import subprocess
import sys


def modules(path):
    out = subprocess.run(["nm", "-S", "--size-sort", path], capture_output=True, text=True, check=True).stdout
    total = collections.Counter()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        size, name = int(parts[1], 16), parts[3]
        m = re.match(r"\$s(\d+)([A-Za-z_][A-Za-z0-9_]*)", name)
        total[m.group(2)[: int(m.group(1))] if m else "<not Swift>"] += size
    return total


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    first = modules(sys.argv[1])
    other = modules(sys.argv[2]) if len(sys.argv) == 3 else collections.Counter()
    shown = {k: v for k, v in first.items() if k not in other}
    for name, size in sorted(shown.items(), key=lambda kv: -kv[1]):
        print(f"{size / 1024:10.1f} KiB  {name}")
    print(f"{sum(shown.values()) / 1024:10.1f} KiB  total")


if __name__ == "__main__":
    main()
