# The SwiftPM dependencies nix/package.nix would fetch (from the lock nix/update-swiftpm-lock.sh writes), as
# plain data, evaluated with nixpkgs' real lib and the stand-in pkgs; Tests/AgentTests/NixModuleEvalTests.swift
# compares them with Package.resolved.
#
#   nix-instantiate --eval --strict --json nix/tests/eval-package.nix --arg lib 'import ../shared/nixpkgs-lib/lib'
{ lib }:

let
  pkgs = import ./stand-in-pkgs.nix { inherit lib; };
  agent = pkgs.callPackage ../package.nix { products = [ "nk3-agent" ]; };
in
map (d: { inherit (d) name; inherit (d.src.nk3StandInArgs) url rev hash fetchSubmodules; })
  agent.nk3StandInArgs.passthru.dependencies
