# Builds nk3 (coordinator) and/or nk3-agent with nixpkgs' Swift toolchain and SwiftPM.
#
#   pkgs.callPackage ./nix/package.nix { }                              # both binaries
#   pkgs.callPackage ./nix/package.nix { products = [ "nk3-agent" ]; }  # the agent only (what nodes need)
#
# Requirements and honest gaps:
#  - Package.swift says swift-tools-version 6.1 and Swift 6 language mode, so this needs a nixpkgs whose
#    `swift` is >= 6.1 (nixpkgs moved from 5.10.1 to 6.2.x in late 2026, NixOS/nixpkgs#557896; NixOS 25.11
#    still has 5.10.1). An older nixpkgs fails below with a clear message instead of an obscure build error.
#  - SwiftPM dependencies are fetched by Nix, not by SwiftPM (the build sandbox has no network). Their
#    revisions and hashes live in nix/swiftpm/ (swiftpm2nix's format), written by nix/update-swiftpm-lock.sh
#    (with swiftpm2nix, or offline with --from-checkouts: nix-hash over the pinned checkouts). The current
#    lock was made offline; NixPackageLockTests checks it pins exactly Package.resolved's revisions.
#    UNVERIFIED: a real fetchgit reproducing those hashes, and this derivation building in the Nix sandbox
#    with nixpkgs' Swift 6 (no NixOS with Swift >= 6.1 was available). Nodes on released NixOS use the
#    prebuilt binary instead (nix/agent-binary.nix).
#  - We prepare .build/ ourselves (about twenty lines, below) instead of `swiftpm2nix.helpers`: that helper
#    asserts a workspace-state.json version <= 6 in several nixpkgs revisions, while SwiftPM 6 writes 7,
#    and it symlinks read-only store paths into .build/checkouts, which SwiftPM 6 may try to refresh.
#    Copies are writable and harmless.
{ lib
, stdenv
, swift
, swiftpm
, fetchgit
, products ? [ "nk3" "nk3-agent" ]
, src ? lib.cleanSourceWith {
    src = ../.;
    # Only what the Swift build reads: keeps nix/, docs and .build out of the derivation's hash.
    filter = path: type:
      let rel = lib.removePrefix (toString ../. + "/") (toString path);
      in rel == "Package.swift" || rel == "Package.resolved"
        || lib.hasPrefix "Sources" rel || lib.hasPrefix "Tests" rel;
  }
}:

let
  version = "0.1.0";

  lockDir = ./swiftpm;
  lockFile = lockDir + "/default.nix";
  haveLock = builtins.pathExists lockFile;

  missingLock = throw ''
    nix/swiftpm/default.nix does not exist: the SwiftPM dependencies have not been locked for Nix yet.
    On a machine with Nix and network access run:  nix/update-swiftpm-lock.sh
    then commit nix/swiftpm/. (It runs `swift package resolve` and swiftpm2nix; see docs/DEPLOYING.md.)
  '';

  # swiftpm2nix output: { workspaceStateFile = ./workspace-state.json; hashes = { <subpath> = "sha256-…"; }; }
  generated = if haveLock then import lockFile else missingLock;
  workspaceState = lib.importJSON generated.workspaceStateFile;

  dependencies = map
    (dep: {
      name = dep.subpath;
      src = fetchgit {
        url = dep.packageRef.location;
        rev = dep.state.checkoutState.revision;
        hash = generated.hashes.${dep.subpath} or (throw ''
          nix/swiftpm/default.nix has no hash for ${dep.subpath}: re-run nix/update-swiftpm-lock.sh.
        '');
        fetchSubmodules = true;
      };
    })
    workspaceState.object.dependencies;

  swiftVersion = swift.version or null;
  swiftOk = swiftVersion == null || lib.versionAtLeast swiftVersion "6.1";

in
assert lib.assertMsg swiftOk ''
  nk3 needs Swift >= 6.1 (Package.swift: swift-tools-version 6.1, Swift 6 language mode),
  but this nixpkgs has swift ${toString swiftVersion}. Use a nixpkgs with Swift 6 (nixos-unstable after
  NixOS/nixpkgs#557896), e.g. the one pinned by the nk3 flake.
'';
assert lib.assertMsg (products != [ ] && lib.all (p: lib.elem p [ "nk3" "nk3-agent" ]) products)
  "nix/package.nix: products must be a non-empty subset of [ \"nk3\" \"nk3-agent\" ], got ${toString products}";

# nixpkgs builds Swift packages with the clang stdenv the toolchain was built with (swift.stdenv, as the
# swiftpm2nix examples do); fall back to the caller's stdenv where the wrapper does not expose one.
(swift.stdenv or stdenv).mkDerivation {
  pname = if products == [ "nk3-agent" ] then "nk3-agent" else if products == [ "nk3" ] then "nk3" else "nk3-all";
  inherit version src;

  # swift + swiftpm: swiftpm's setup hook supplies buildPhase (`swift build -c release $swiftpmFlags`)
  # and the `swiftpmBinPath` helper used in installPhase.
  nativeBuildInputs = [ swift swiftpm ];

  # SwiftPM builds one product per `--product`; several flags are not supported by every SwiftPM, so
  # build them one after the other instead.
  dontUseSwiftpmBuild = true;

  configurePhase = ''
    runHook preConfigure
    mkdir -p .build/checkouts
    install -m 0600 ${generated.workspaceStateFile} .build/workspace-state.json
    ${lib.concatMapStrings (d: ''
      cp -r --no-preserve=mode ${d.src} .build/checkouts/${d.name}
    '') dependencies}
    runHook postConfigure
  '';

  buildPhase = ''
    runHook preBuild
    ${lib.concatMapStrings (p: ''
      swift build -c release --disable-sandbox --skip-update --product ${p}
    '') products}
    runHook postBuild
  '';

  installPhase = ''
    runHook preInstall
    binPath="$(swift build -c release --show-bin-path)"
    mkdir -p $out/bin
    ${lib.concatMapStrings (p: ''
      install -m 0755 "$binPath/${p}" $out/bin/${p}
    '') products}
    runHook postInstall
  '';

  # The test suites spawn sshd and sockets on loopback; they run in CI (.ci/run), not in the Nix sandbox.
  doCheck = false;

  passthru = { inherit products dependencies; };

  meta = {
    description = "nk3: a declarative, rolling NixOS + k3s cluster manager (coordinator and node agent)";
    platforms = lib.platforms.linux;
    mainProgram = if products == [ "nk3-agent" ] then "nk3-agent" else "nk3";
  };
}
