{
  description = "nk3: keep a bare-metal k3s cluster on NixOS declared in one inventory and roll changes through it safely";

  # nixos-unstable: nk3 needs Swift >= 6.1 (see nix/package.nix); NixOS 25.11 ships Swift 5.10.1.
  # `nix flake lock` pins it in flake.lock (needs network; commit the lock file).
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (system: pkgs: rec {
        # The coordinator CLI, for the operator's machine.
        nk3 = pkgs.callPackage ./nix/package.nix { products = [ "nk3" ]; };
        # The node agent only: keeps the nodes' closure free of the coordinator.
        nk3-agent = pkgs.callPackage ./nix/package.nix { products = [ "nk3-agent" ]; };
        default = nk3;
      });

      # The module on its own (nix/module.nix is also what the coordinator ships to nodes), with the
      # package defaulting to this flake's build instead of `pkgs.nk3-agent`.
      nixosModules.default = { pkgs, lib, ... }: {
        imports = [ ./nix/module.nix ];
        services.nk3-agent.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.nk3-agent;
      };
      nixosModules.nk3-agent = self.nixosModules.default;

      overlays.default = final: prev: {
        nk3 = final.callPackage ./nix/package.nix { products = [ "nk3" ]; };
        nk3-agent = final.callPackage ./nix/package.nix { products = [ "nk3-agent" ]; };
      };

      checks = forAllSystems (system: pkgs: {
        # Three k3s nodes with nk3-agent and a coordinator VM; needs KVM (see nix/tests/vm-test.nix).
        vm-test = import ./nix/tests/vm-test.nix {
          inherit pkgs;
          nk3 = self.packages.${system}.nk3;
          nk3-agent = self.packages.${system}.nk3-agent;
          agentModule = ./nix/module.nix;
        };
        # The same parse check CI runs on Debian, here with the flake's Nix.
        nix-parse = pkgs.runCommand "nk3-nix-parse" { nativeBuildInputs = [ pkgs.nix pkgs.git ]; } ''
          export NIX_STATE_DIR=$TMPDIR/nix-state
          cp -r ${./.} src && chmod -R u+w src && cd src
          rm -rf .git
          bash scripts/check-nix.sh
          touch $out
        '';
      });

      devShells = forAllSystems (system: pkgs: {
        default = (pkgs.mkShell.override { stdenv = pkgs.swift.stdenv or pkgs.stdenv; }) {
          packages = [ pkgs.swift pkgs.swiftpm pkgs.swiftpm2nix pkgs.nurl pkgs.jq pkgs.git pkgs.nix pkgs.openssh ];
        };
      });

      formatter = forAllSystems (system: pkgs: pkgs.nixpkgs-fmt);
    };
}
