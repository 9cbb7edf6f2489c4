# The prebuilt nk3-agent binary as a NixOS package: works on any NixOS >= 24.05, whatever Swift its nixpkgs
# has, because the Swift runtime is linked into the binary (scripts/build-agent-release.sh builds it with
# `swift build -c release --static-swift-stdlib --product nk3-agent`). What is left dynamic is glibc and
# GCC's runtime (libstdc++, libgcc_s); a binary linked on another distribution names its dynamic linker
# as /lib64/ld-linux-x86-64.so.2, which NixOS does not have, so this derivation points its interpreter
# and rpath at the node's own glibc and GCC runtime with patchelf, the way nixpkgs packages prebuilt
# binaries: `patchelf --set-interpreter ${stdenv.cc.bintools.dynamicLinker}` (the attribute is set by
# pkgs/build-support/bintools-wrapper/default.nix) and `--set-rpath ${lib.makeLibraryPath [ … ]}`, the
# explicit form of what autoPatchelfHook (pkgs/build-support/setup-hooks/auto-patchelf.sh) works out.
#
# nk3 ships this file to every node as /etc/nixos/nk3-agent-binary.nix, and the generated nk3-agent.nix
# uses it by default:
#
#   services.nk3-agent.package = pkgs.callPackage ./nk3-agent-binary.nix {
#     binary = /var/lib/nk3-agent/bin/nk3-agent;   # placed there by `nk3 bootstrap`
#     sha256 = "…";                                # the digest nk3 signed, when it knows it
#   };
#
# The binary is copied into the store by builtins.path (it holds no secrets); with `sha256` the copy
# fails unless the file is exactly that binary. The commands in installPhase are run as they are, with
# Debian's patchelf, by Tests/AgentTests/AgentBinaryPatchTests.swift.
#
# Needs glibc >= 2.36 on the node (the agent is linked with packed relative relocations, DT_RELR;
# NixOS 23.05 and later have it) and an x86_64 or aarch64 binary matching the node.
{ lib
, stdenv
, patchelf
, binary
, sha256 ? null
, version ? "prebuilt"
}:

let
  # Only the file's content matters; the name keeps the store path readable.
  src = builtins.path ({
    path = binary;
    name = "nk3-agent-${version}-unpatched";
    recursive = false;
  } // lib.optionalAttrs (sha256 != null) { inherit sha256; });

  interpreter = stdenv.cc.bintools.dynamicLinker;
  rpath = lib.makeLibraryPath [ stdenv.cc.cc.lib stdenv.cc.libc ];
in
stdenv.mkDerivation {
  pname = "nk3-agent";
  inherit version src;

  dontUnpack = true;
  dontConfigure = true;
  dontBuild = true;
  # Stripping would drop the symbol table the agent's crash backtraces read.
  dontStrip = true;
  # nixpkgs' fixup would shrink the rpath again; it is already exactly what the binary needs.
  dontPatchELF = true;

  nativeBuildInputs = [ patchelf ];

  installPhase = ''
    runHook preInstall
    install -D -m 0755 "$src" "$out/bin/nk3-agent"
    patchelf --set-interpreter ${interpreter} --set-rpath ${rpath} "$out/bin/nk3-agent"
    runHook postInstall
  '';

  # The agent answers --version without a config file; a binary that cannot start fails the build here.
  doInstallCheck = true;
  installCheckPhase = ''
    "$out/bin/nk3-agent" --version
  '';

  meta = {
    description = "nk3 node agent (prebuilt, Swift runtime linked in)";
    mainProgram = "nk3-agent";
    platforms = [ "x86_64-linux" "aarch64-linux" ];
    sourceProvenance = [ lib.sourceTypes.binaryNativeCode ];
  };
}
