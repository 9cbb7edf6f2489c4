# Evaluates a node's configuration modules (e.g. nk3's generated /etc/nixos/nk3-agent.nix, which imports
# nk3-agent-module.nix) with nixpkgs' real module system and the stand-ins of nix/tests/stand-ins.nix, and
# returns what a test needs as plain data (nix-instantiate --eval --strict --json):
#
#   nix-instantiate --eval --strict --json nix/tests/eval-node.nix \
#     --arg lib 'import ../shared/nixpkgs-lib/lib' --arg modules '[ /etc/nixos/nk3-agent.nix ]'
#
# Result: failedAssertions and warnings (NixOS's toplevel would stop on the former), the nk3-agent unit
# (path as package names, ExecStart, restartIfChanged, …), the text of /etc/nk3-agent/config.json, the
# firewall ports and tmpfiles rules, and the agent package's build recipe when it is nk3's prebuilt-binary
# derivation. Type errors (a port out of range, a path literal as a key file) abort the evaluation with
# nixpkgs' own error message, as `nixos-rebuild` would.
{ lib
, modules
, root ? "/nk3-stand-in"
}:

let
  pkgs = import ./stand-in-pkgs.nix { inherit lib root; };
  evaluated = lib.evalModules {
    modules = [ ./stand-ins.nix { _module.args.pkgs = pkgs; } ] ++ modules;
  };
  config = evaluated.config;
  agent = config.systemd.services.nk3-agent or null;
  pathName = p: if lib.isDerivation p then p.name else p;
  configJSON = config.environment.etc."nk3-agent/config.json".source.nk3StandInText or null;
  package = config.services.nk3-agent.package;
in
{
  failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
  inherit (config) warnings;
  enabled = config.services.nk3-agent.enable;
  unit = if agent == null then null else {
    inherit (agent) description wantedBy after wants restartIfChanged environment;
    path = map pathName agent.path;
    unitConfig = agent.unitConfig;
    serviceConfig = lib.mapAttrs (n: v: if lib.isDerivation v then v.outPath else v) agent.serviceConfig;
  };
  inherit configJSON;
  firewallTCP = config.networking.firewall.allowedTCPPorts;
  firewallCommands = config.networking.firewall.extraCommands;
  firewallInputRules = config.networking.firewall.extraInputRules;
  tmpfiles = config.systemd.tmpfiles.rules;
  stateVersion = config.system.stateVersion or null;
  grubDevices = config.boot.loader.grub.devices;
  grubDefault = config.boot.loader.grub.default;
  watchdogRuntime = config.systemd.watchdog.runtimeTime;
  # The prebuilt-binary derivation's recipe (nix/agent-binary.nix), when that is the agent package.
  packageRecipe =
    if agent != null && package ? nk3StandInArgs then {
      inherit (package.nk3StandInArgs) installPhase;
      src = toString package.nk3StandInArgs.src;
      out = package.outPath;
    } else null;
}
