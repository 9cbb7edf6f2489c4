#!/usr/bin/env bash
# Builds the prebuilt nk3-agent that NixOS nodes run (docs/DEPLOYING.md, "Getting the agent onto the node"):
# release mode, the Swift runtime linked in (--static-swift-stdlib), so that the node needs no Swift at all;
# nix/agent-binary.nix then points its interpreter and rpath at the node's glibc and GCC runtime.
#
#   scripts/build-agent-release.sh            # prints the binary's path, size, sha256 and dynamic libraries
#
# Package.swift links nk3-agent with lld, packed relative relocations (DT_RELR: the node's glibc must be
# >= 2.36, which NixOS has since 23.05) and --no-export-dynamic (which undoes the --export-dynamic that
# --static-swift-stdlib adds). NK3_AGENT_PLAIN_LINK=1 builds with the toolchain's default linker instead.
# Build on the oldest glibc you need to support: the binary requires the glibc symbol versions it was
# linked against (a Debian 12 build needs glibc >= 2.36 anyway, because of DT_RELR).
#
# Fails if the binary needs any shared library other than glibc's and GCC's runtime (libstdc++, libgcc_s),
# because the derivation's rpath provides only those.
set -euo pipefail
cd "$(dirname "$0")/.."

flags=(-c release --static-swift-stdlib --product nk3-agent)
swift build "${flags[@]}" "$@"
bin="$(swift build -c release --static-swift-stdlib --show-bin-path "$@")/nk3-agent"

needed="$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')"
bad=""
for lib in $needed; do
    case "$lib" in
        libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*|libutil.so.*|ld-linux*|libstdc++.so.*|libgcc_s.so.*) ;;
        *) bad="$bad $lib" ;;
    esac
done

echo "binary:  $bin"
echo "size:    $(stat -c %s "$bin") bytes"
echo "sha256:  $(sha256sum "$bin" | cut -d' ' -f1)"
echo "needs:   $(echo $needed)"
echo "version: $("$bin" --version)"
if [ -n "$bad" ]; then
    echo "build-agent-release: the binary needs libraries a NixOS node's rpath will not have:$bad" >&2
    exit 1
fi
