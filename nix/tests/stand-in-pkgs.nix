# Stand-in `pkgs` for evaluating nk3's NixOS module with nixpkgs' real `lib` but without a nixpkgs tree
# (Tests/AgentTests/NixModuleEvalTests.swift). Nothing here is built: a package is an attribute set with
# `type = "derivation"` (what lib.isDerivation and types.package accept) whose outPath is a directory
# under `root`, so a test can put real files there (Tests/AgentTests/AgentBinaryPatchTests.swift runs the
# agent-binary derivation's own commands against such directories).
#
# Only what nk3's Nix files read is defined; anything else is a missing attribute, an evaluation error
# (stricter than nixpkgs, never more lenient).
{ lib, root ? "/nk3-stand-in" }:

let
  package = name: extra:
    let self = {
      type = "derivation";
      inherit name;
      pname = name;
      outPath = "${root}/${name}";
      # Every derivation has its `out` output; other outputs (xz.bin, gcc's lib) are given per package.
      out = self;
      outputs = [ "out" ];
    } // extra;
    in self;

  # pkgs.formats.json (nixpkgs pkgs/pkgs-lib/formats.nix): the type of a JSON value; `generate` there runs
  # jq over builtins.toJSON. Here the derivation stand-in keeps that JSON text as `nk3StandInText`.
  formats.json = { }: {
    type = with lib.types;
      let
        valueType = nullOr (oneOf [ bool int float str path (attrsOf valueType) (listOf valueType) ]) // {
          description = "JSON value";
        };
      in
      valueType;
    generate = name: value: package name { nk3StandInText = builtins.toJSON value; };
  };

  # stdenv.mkDerivation stand-in: returns the arguments (phases, inputs) as a package, so a test can read
  # and run exactly the commands a derivation would run. The dynamic linker and the C/C++ runtime come
  # from stdenv.cc as in nixpkgs (pkgs/build-support/bintools-wrapper/default.nix sets
  # bintools.dynamicLinker; stdenv.cc.cc.lib is GCC's runtime libraries, stdenv.cc.libc glibc).
  gccLib = package "gcc-lib" { };
  glibc = package "glibc" { };
  stdenv = {
    mkDerivation = args: package (args.pname or args.name) { nk3StandInArgs = args; };
    cc = {
      cc = package "gcc" { lib = gccLib; };
      libc = glibc;
      bintools.dynamicLinker = "${glibc}/lib/${if builtins.currentSystem == "aarch64-linux" then "ld-linux-aarch64.so.1" else "ld-linux-x86-64.so.2"}";
    };
    hostPlatform.system = "x86_64-linux";
  };

  pkgs = {
    inherit lib formats stdenv;
    callPackage = fn: args:
      let f = if builtins.isFunction fn then fn else import fn;
      in f (builtins.intersectAttrs (builtins.functionArgs f) pkgs // args);
    patchelf = package "patchelf" { };
    coreutils = package "coreutils" { };
    gnutar = package "gnutar" { };
    xz = let xz = package "xz" { bin = xz; outputs = [ "bin" "out" ]; }; in xz;
    gzip = package "gzip" { };
    gitMinimal = package "git-minimal" { };
    util-linux = package "util-linux" { };
    grub2 = package "grub" { };
    systemd = package "systemd" { };
    nix = package "nix" { };
    openssh = package "openssh" { };
    nixos-rebuild = package "nixos-rebuild" { };
    # nix/package.nix (the from-source build): fetchgit's arguments are kept so a test can compare them with
    # Package.resolved; swift has the version nixpkgs' swift wrapper reports.
    fetchgit = args: package "source" { nk3StandInArgs = args; };
    swift = package "swift" { version = "6.2.1"; };
    swiftpm = package "swiftpm" { };
    # environment.systemPackages of nk3's default template
    htop = package "htop" { };
    vim = package "vim" { };
    git = package "git" { };
    curl = package "curl" { };
    jq = package "jq" { };
    lsof = package "lsof" { };
  };
in
pkgs
