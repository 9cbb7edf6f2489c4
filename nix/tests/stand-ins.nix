# Stand-in declarations of the NixOS options nk3's module (nix/module.nix) and its generated nk3-agent.nix
# read or set, so that both evaluate under nixpkgs' real module system (lib.evalModules) without a nixpkgs
# tree. Each is typed and defaulted as the cited nixpkgs file declares it (nixpkgs master, 2026); where
# nixpkgs derives a value in its own `config` (GRUB's system.build.grub, systemd-boot turning GRUB off),
# that is reproduced too, with the file cited. Used by nix/tests/eval-node.nix.
#
# Deliberately NOT lenient: an option nixpkgs does not declare is not declared here either, so a module
# that reads one (e.g. the nonexistent boot.loader.grub.package) fails to evaluate, as on a real node.
{ config, lib, pkgs, ... }:

let
  inherit (lib) mkOption types;

  # nixos/lib/systemd-unit-options.nix (the common service options) and nixos/lib/systemd-lib.nix
  # (unitOption: a value or a list of values of a unit setting).
  unitOption = types.oneOf [ types.bool types.int types.str types.path types.package
    (types.listOf (types.oneOf [ types.bool types.int types.str types.path types.package ])) ];
  serviceType = types.submodule {
    options = {
      description = mkOption { type = types.str; default = ""; };
      wantedBy = mkOption { type = types.listOf types.str; default = [ ]; };
      requiredBy = mkOption { type = types.listOf types.str; default = [ ]; };
      after = mkOption { type = types.listOf types.str; default = [ ]; };
      before = mkOption { type = types.listOf types.str; default = [ ]; };
      wants = mkOption { type = types.listOf types.str; default = [ ]; };
      requires = mkOption { type = types.listOf types.str; default = [ ]; };
      # `path`: packages (bin/ and sbin/ go on PATH) or strings.
      path = mkOption { type = types.listOf (types.oneOf [ types.package types.str ]); default = [ ]; };
      environment = mkOption {
        type = types.attrsOf (types.nullOr (types.oneOf [ types.str types.path types.package ]));
        default = { };
      };
      serviceConfig = mkOption { type = types.attrsOf unitOption; default = { }; };
      unitConfig = mkOption { type = types.attrsOf unitOption; default = { }; };
      restartIfChanged = mkOption { type = types.bool; default = true; };
      stopIfChanged = mkOption { type = types.bool; default = true; };
      script = mkOption { type = types.lines; default = ""; };
    };
  };
in
{
  options = {
    # nixos/modules/misc/assertions.nix
    assertions = mkOption { type = types.listOf types.unspecified; internal = true; default = [ ]; };
    warnings = mkOption { type = types.listOf types.str; internal = true; default = [ ]; };

    # nixos/modules/system/build.nix (older releases: system/activation/top-level.nix)
    system.build = mkOption {
      default = { };
      type = types.submoduleWith {
        modules = [ { freeformType = with types; lazyAttrsOf (uniq unspecified); } ];
      };
    };
    # nixos/modules/misc/version.nix: a string; NixOS defaults it to the current release and warns when
    # it is not set (stateVersion must stay at the first install's release).
    system.stateVersion = mkOption { type = types.str; };

    # nixos/modules/misc/nixpkgs.nix is not modelled; `pkgs` comes from _module.args (eval-node.nix).

    # nixos/modules/tasks/network-interfaces.nix (hostName: a hostname string, default "nixos")
    networking.hostName = mkOption {
      type = types.strMatching "^$|^[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?$";
      default = "nixos";
    };
    # nixos/modules/services/networking/firewall.nix
    networking.firewall.enable = mkOption { type = types.bool; default = true; };
    networking.firewall.allowedTCPPorts = mkOption { type = types.listOf types.port; default = [ ]; };
    networking.firewall.allowedUDPPorts = mkOption { type = types.listOf types.port; default = [ ]; };
    # nixos/modules/services/networking/firewall-iptables.nix (shell lines run when the nixos-fw chains are built)
    networking.firewall.extraCommands = mkOption { type = types.lines; default = ""; };
    # nixos/modules/services/networking/firewall-nftables.nix (nft rules added to the input chain)
    networking.firewall.extraInputRules = mkOption { type = types.lines; default = ""; };
    # nixos/modules/services/networking/nftables.nix
    networking.nftables.enable = mkOption { type = types.bool; default = false; };
    # nixos/modules/config/networking.nix (internal)
    networking.proxy.envVars = mkOption { type = types.attrs; internal = true; default = { }; };

    # nixos/modules/config/nix.nix (nix.package) and services/system/nix-daemon.nix (nix.envVars, internal)
    nix.package = mkOption { type = types.package; default = pkgs.nix; };
    nix.envVars = mkOption { type = types.attrs; internal = true; default = { }; };

    # nixos/modules/programs/ssh.nix: mkPackageOption pkgs "openssh" { }
    programs.ssh.package = mkOption { type = types.package; default = pkgs.openssh; };

    # nixos/modules/config/shells-environment.nix: values are strings, paths, ints or lists of those;
    # `apply` joins lists with ":" (NIX_PATH arrives here from nix.nixPath, nixos/modules/config/nix-channel.nix).
    environment.sessionVariables = mkOption {
      type = with types; attrsOf (oneOf [ (listOf (oneOf [ int str path ])) int str path ]);
      default = { };
      apply = lib.mapAttrs (n: v: if lib.isList v then lib.concatStringsSep ":" v else "${toString v}");
    };
    # nixos/modules/system/etc/etc.nix: source is a path (a store path), text the file content.
    environment.etc = mkOption {
      default = { };
      type = types.attrsOf (types.submodule ({ name, ... }: {
        options = {
          enable = mkOption { type = types.bool; default = true; };
          target = mkOption { type = types.str; default = name; };
          text = mkOption { type = types.nullOr types.lines; default = null; };
          source = mkOption { type = types.path; };
          mode = mkOption { type = types.str; default = "symlink"; };
        };
      }));
    };
    # nixos/modules/config/system-path.nix
    environment.systemPackages = mkOption { type = types.listOf types.package; default = [ ]; };

    # nixos/modules/system/boot/systemd.nix (systemd.package: mkPackageOption pkgs "systemd")
    systemd.package = mkOption { type = types.package; default = pkgs.systemd; };
    systemd.services = mkOption { type = types.attrsOf serviceType; default = { }; };
    # nixos/modules/system/boot/systemd.nix: RuntimeWatchdogSec= in system.conf, a time span string
    systemd.watchdog.runtimeTime = mkOption { type = types.nullOr types.str; default = null; };
    # nixos/modules/system/boot/systemd/tmpfiles.nix
    systemd.tmpfiles.rules = mkOption { type = types.listOf types.str; default = [ ]; };

    # nixos/modules/virtualisation/container-config.nix / boot.isContainer: nixos/modules/system/boot/stage-2.nix
    boot.isContainer = mkOption { type = types.bool; default = false; };
    # nixos/modules/system/boot/loader/grub/grub.nix: enable defaults to !boot.isContainer; device "" ;
    # devices [ ]; no `package` option (the GRUB it installs is config.system.build.grub).
    boot.loader.grub = {
      enable = mkOption { type = types.bool; default = !config.boot.isContainer; };
      device = mkOption { type = types.str; default = ""; };
      devices = mkOption { type = types.listOf types.str; default = [ ]; };
      efiSupport = mkOption { type = types.bool; default = false; };
      default = mkOption { type = types.either types.int types.str; default = "0"; apply = toString; };
    };
    # nixos/modules/system/boot/loader/systemd-boot/systemd-boot.nix
    boot.loader.systemd-boot.enable = mkOption { type = types.bool; default = false; };
    # nixos/modules/system/boot/loader/efi.nix
    boot.loader.efi.canTouchEfiVariables = mkOption { type = types.bool; default = false; };
    # nixos/modules/system/boot/kernel.nix
    boot.kernelModules = mkOption { type = types.listOf types.str; default = [ ]; };
    # nixos/modules/system/boot/tmp.nix
    boot.tmp.cleanOnBoot = mkOption { type = types.bool; default = false; };

    # Read by nk3's default template (Sources/Coordinator/Templates/DefaultTemplate.swift):
    # nixos/modules/services/cluster/k3s/default.nix
    services.k3s = {
      enable = mkOption { type = types.bool; default = false; };
      role = mkOption { type = types.enum [ "server" "agent" ]; default = "server"; };
      serverAddr = mkOption { type = types.str; default = ""; };
      token = mkOption { type = types.str; default = ""; };
      tokenFile = mkOption { type = types.nullOr types.path; default = null; };
      clusterInit = mkOption { type = types.bool; default = false; };
      extraFlags = mkOption { type = with types; either str (listOf str); default = [ ]; };
    };
    # nixos/modules/services/networking/ssh/sshd.nix (settings is a freeform submodule)
    services.openssh.enable = mkOption { type = types.bool; default = false; };
    services.openssh.settings = mkOption {
      type = types.submodule { freeformType = with types; attrsOf (nullOr (oneOf [ bool int str (listOf str) ])); };
      default = { };
    };
    # nixos/modules/system/boot/timesyncd.nix
    services.timesyncd.enable = mkOption { type = types.bool; default = true; };

    # Read by the VM test's node configuration (nix/tests/vm-base.nix):
    # nixos/modules/misc/documentation.nix
    documentation.enable = mkOption { type = types.bool; default = true; };
    # nixos/modules/tasks/network-interfaces.nix
    networking.useDHCP = mkOption { type = types.bool; default = true; };
    networking.interfaces = mkOption {
      default = { };
      type = types.attrsOf (types.submodule {
        options.ipv4.addresses = mkOption {
          default = [ ];
          type = types.listOf (types.submodule {
            options.address = mkOption { type = types.str; };
            options.prefixLength = mkOption { type = types.addCheck types.int (n: n >= 0 && n <= 32); };
          });
        };
      });
    };
    # nixos/modules/services/networking/firewall.nix
    networking.firewall.trustedInterfaces = mkOption { type = types.listOf types.str; default = [ ]; };
    # nixos/modules/config/nix.nix: nix.settings is a freeform submodule of nix.conf values
    nix.settings = mkOption {
      type = types.submodule {
        freeformType = with types; attrsOf (oneOf [ bool int str (listOf str) ]);
      };
      default = { };
    };
  };

  config = lib.mkMerge [
    # nixos/modules/installer/tools/tools.nix
    { system.build.nixos-rebuild = pkgs.nixos-rebuild; }
    # nixos/modules/system/boot/loader/grub/grub.nix: devices gets `device` when that is set, and
    # system.build.grub is the GRUB package, or null when devices = [ "nodev" ] (menu only).
    (lib.mkIf config.boot.loader.grub.enable {
      boot.loader.grub.devices = lib.optional (config.boot.loader.grub.device != "") config.boot.loader.grub.device;
      system.build.grub = if config.boot.loader.grub.devices == [ "nodev" ] then null else pkgs.grub2;
      assertions = [{
        assertion = config.boot.loader.grub.devices != [ ];
        message = "You must set the option ‘boot.loader.grub.devices’ or 'boot.loader.grub.mirroredBoots' to make the system bootable.";
      }];
    })
    # systemd-boot.nix: enabling it turns GRUB off by default.
    (lib.mkIf config.boot.loader.systemd-boot.enable { boot.loader.grub.enable = lib.mkDefault false; })
  ];
}
