/// The NixOS module for nk3-agent, shipped to every node as `nk3-agent-module.nix` (imported by the generated
/// `nk3-agent.nix`). A copy of `nix/module.nix`: `NixAgentModuleTests` fails when the two differ, so refresh
/// this string from that file whenever the module changes.
public enum NixAgentModule {
    /// The module's Nix source (byte-identical to `nix/module.nix`).
    public static let source = #"""
# NixOS module for nk3-agent, the on-node half of nk3.
#
# This file is SELF-CONTAINED on purpose: the coordinator embeds it verbatim and ships it to every node
# as /etc/nixos/nk3-agent-module.nix, next to the generated /etc/nixos/nk3-agent.nix that imports it.
# So it must not import anything by relative path, and it must evaluate on a node that only has
# /etc/nixos and a nixpkgs channel.
#
# Written the way nixpkgs modules are: mkEnableOption, a package option, typed options, an RFC 42
# free-form `settings` rendered with pkgs.formats.json (nixos/doc/manual/development/settings-options.section.md),
# assertions with clear messages, and the firewall idiom of services/monitoring/prometheus/exporters.nix.
#
# Key material is never in the Nix store: certFile / keyFile / caFile are absolute path STRINGS to files
# that `nk3 bootstrap` places under /var/lib/nk3-agent/tls (0600 files in a 0700 directory). A Nix path
# literal (./agent.key) is refused by the type, so it can never be copied into the world-readable store.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.nk3-agent;
  json = pkgs.formats.json { };

  storeDir = builtins.storeDir;

  # An absolute path given as a string. Deliberately not types.path: types.path also accepts path
  # literals, and a path literal such as ./agent.key is copied into /nix/store (world-readable).
  absolutePathString = lib.types.strMatching "/.*";

  keyPathOption = what: default: lib.mkOption {
    type = lib.types.nullOr absolutePathString;
    inherit default;
    example = default;
    description = ''
      Absolute path (a string, not a Nix path) of the ${what} on the node. It must not point into the
      Nix store. `nk3 bootstrap` copies it to /var/lib/nk3-agent/tls with mode 0600.
    '';
  };

  # Options -> the agent's JSON config (keys fixed by the agent, see the agent's --config reader).
  # `settings` is merged OVER these, so anything the agent understands can be set or overridden there.
  optionSettings = {
    nodeName = cfg.nodeName;
    listenAddress = cfg.listenAddress;
    port = cfg.port;
    tls = {
      certFile = cfg.certFile;
      keyFile = cfg.keyFile;
      caFile = cfg.caFile;
    };
    signingPublicKeys = cfg.signingPublicKeys;
    stateDir = cfg.stateDir;
    configDir = "/etc/nixos";
    k3sUnit = cfg.k3sUnit;
    confirmTimeoutSeconds = cfg.confirmTimeout;
  };

  configFile = json.generate "nk3-agent-config.json" (lib.recursiveUpdate optionSettings cfg.settings);

  keyPaths = lib.filter (p: p != null) [ cfg.certFile cfg.keyFile cfg.caFile ];

  # base64 of 32 raw Ed25519 public-key bytes: 43 base64 characters and one '=' of padding.
  isSigningKey = k: builtins.match "[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=" k != null;
in
{
  options.services.nk3-agent = {
    enable = lib.mkEnableOption "nk3-agent, which applies signed NixOS configuration bundles sent by the nk3 coordinator over mutual TLS";

    package = lib.mkOption {
      type = lib.types.package;
      # A node that only has /etc/nixos has no nk3 flake input. If the node's nixpkgs carries an nk3-agent
      # (an overlay, or a future nixpkgs package) it is used; otherwise evaluation stops here with a message
      # that says what to set. The nk3 flake's nixosModules.default sets this option for you.
      default = pkgs.nk3-agent or (throw ''
        services.nk3-agent.package is not set and this nixpkgs has no `nk3-agent` package.
        Set it in your configuration template, for example
          services.nk3-agent.package = pkgs.callPackage /path/to/nk3/nix/package.nix { products = [ "nk3-agent" ]; };
        (with the nk3 source pinned by fetchTarball + sha256), or use the nk3 flake's nixosModules.default,
        or add an overlay that provides pkgs.nk3-agent. See docs/DEPLOYING.md, "Getting the agent onto the node".
      '');
      defaultText = lib.literalExpression "pkgs.nk3-agent";
      description = "The nk3-agent package. Must contain bin/nk3-agent.";
    };

    nodeName = lib.mkOption {
      type = lib.types.str;
      default = config.networking.hostName;
      defaultText = lib.literalExpression "config.networking.hostName";
      description = "Name of this node; the agent refuses signed envelopes addressed to any other name.";
    };

    listenAddress = lib.mkOption {
      type = lib.types.str;
      default = "0.0.0.0";
      description = "Address the agent's HTTPS (mutual TLS) server binds to.";
    };

    port = lib.mkOption {
      type = lib.types.port;
      default = 7443;
      description = "TCP port of the agent's HTTPS (mutual TLS) server.";
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Open `port` in the NixOS firewall (every connection still needs a client certificate from the cluster CA).";
    };

    certFile = keyPathOption "agent's server certificate (PEM)" null;
    keyFile = keyPathOption "agent's private key (PEM, mode 0600)" null;
    caFile = keyPathOption "cluster CA certificate (PEM) that client certificates must chain to" null;

    signingPublicKeys = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [ "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=" ];
      description = ''
        Ed25519 public keys (base64 of the 32 raw bytes) whose signatures the agent accepts on commands.
        Several keys may be listed, for rotation. Public keys only: they are safe in the Nix store.
      '';
    };

    stateDir = lib.mkOption {
      type = absolutePathString;
      default = "/var/lib/nk3-agent";
      description = "Directory for the agent's persisted state (apply state machine, last serial, TLS files). Created 0700.";
    };

    k3sUnit = lib.mkOption {
      type = lib.types.str;
      default = "k3s";
      description = "systemd unit of k3s on this node, whose state the agent reports (the nixpkgs k3s module runs it as k3s.service).";
    };

    confirmTimeout = lib.mkOption {
      type = lib.types.ints.positive;
      default = 600;
      description = ''
        Seconds the agent waits for a signed confirm after a successful rebuild (or after the reboot into
        the new generation) before it rolls back by itself.
      '';
    };

    settings = lib.mkOption {
      type = json.type;
      default = { };
      example = lib.literalExpression ''
        {
          kubeletHealthzURL = "http://[::1]:10248/healthz";
          commands.nixosRebuild = "/run/current-system/sw/bin/nixos-rebuild";
        }
      '';
      description = ''
        Free-form agent configuration (RFC 42), merged recursively OVER the values derived from the options
        above and written to /etc/nk3-agent/config.json. Use it for agent keys without a dedicated option
        (kubeletHealthzURL, commands, paths, …).
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.certFile != null && cfg.keyFile != null && cfg.caFile != null;
        message = ''
          services.nk3-agent is enabled but its TLS files are not all set: certFile = ${toString cfg.certFile},
          keyFile = ${toString cfg.keyFile}, caFile = ${toString cfg.caFile}. Set all three to absolute paths
          (the nk3 defaults are /var/lib/nk3-agent/tls/{agent.crt,agent.key,ca.crt}, placed there by
          `nk3 bootstrap`).
        '';
      }
      {
        assertion = lib.all (p: !(lib.hasPrefix "${storeDir}/" p)) keyPaths;
        message = ''
          services.nk3-agent: certFile / keyFile / caFile must not be in the Nix store (${storeDir} is world-readable);
          got ${lib.concatStringsSep ", " keyPaths}. Keep them under ${cfg.stateDir}/tls.
        '';
      }
      {
        assertion = cfg.signingPublicKeys != [ ];
        message = ''
          services.nk3-agent.signingPublicKeys is empty: the agent would accept no command at all.
          Add the cluster's Ed25519 signing public key (base64 of 32 bytes; `nk3 certs init` prints it).
        '';
      }
      {
        assertion = lib.all isSigningKey cfg.signingPublicKeys;
        message = ''
          services.nk3-agent.signingPublicKeys must each be the base64 of 32 raw Ed25519 bytes (44 characters
          ending in '='); these are not: ${lib.concatStringsSep ", " (lib.filter (k: !(isSigningKey k)) cfg.signingPublicKeys)}.
        '';
      }
    ];

    # Public configuration only (paths and public keys): fine in the store.
    environment.etc."nk3-agent/config.json".source = configFile;

    # 0700 state and TLS directories, mode enforced at every boot/activation ('d' adjusts the mode of an
    # existing directory). Not StateDirectory=, because stateDir may be moved away from /var/lib.
    systemd.tmpfiles.rules = [
      "d ${cfg.stateDir} 0700 root root -"
      "d ${cfg.stateDir}/tls 0700 root root -"
    ];

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [ cfg.port ];

    systemd.services.nk3-agent = {
      description = "nk3 node agent (signed NixOS config bundles over mutual TLS)";
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];

      # Copied from nixos-upgrade.service (nixpkgs nixos/modules/tasks/auto-upgrade.nix). The agent runs the very
      # `nixos-rebuild switch` that activates a configuration changing this unit; without these the
      # switch would stop or restart the agent halfway through its own apply. The agent's persisted state
      # machine resumes anything a real restart interrupts. Consequence: a new agent package or config.json
      # takes effect at the next reboot or explicit `systemctl restart nk3-agent`, never mid-apply.
      restartIfChanged = false;
      unitConfig.X-StopOnRemoval = false;

      # What the agent runs. nixos-rebuild is the one this system was built with (the same derivation
      # nixos-upgrade.service uses); the rest mirrors nixos-upgrade.service's path (channel unpacking needs
      # tar/xz/gzip, flakes need git) plus systemctl/bootctl/systemd-run (systemd) for reboot, unit state and
      # trial boots (nk3 docs/UPSTREAM.md#trial-boot), and grub-reboot when GRUB is the bootloader.
      path = [
        config.system.build.nixos-rebuild
        config.nix.package.out
        config.systemd.package
        pkgs.coreutils
        pkgs.gnutar
        pkgs.xz.bin
        pkgs.gzip
        pkgs.gitMinimal
        pkgs.util-linux
      ] ++ lib.optional config.boot.loader.grub.enable config.boot.loader.grub.package;

      environment = config.nix.envVars
        // lib.optionalAttrs (config.environment.sessionVariables ? NIX_PATH) {
          # nixos-rebuild finds <nixpkgs/nixos> and <nixos-config> through NIX_PATH (as in nixos-upgrade.service).
          inherit (config.environment.sessionVariables) NIX_PATH;
        }
        // {
          HOME = "/root"; # nix-channel reads ~/.nix-channels (nixos-upgrade.service sets it too)
          # Builds go to nix-daemon (its own cgroup and sandbox) instead of running in-process as root with
          # the local store: a build is then not killed with the agent and does not run under the agent's
          # process limits.
          NIX_REMOTE = "daemon";
        }
        // config.networking.proxy.envVars;

      serviceConfig = {
        Type = "exec";
        ExecStart = "${cfg.package}/bin/nk3-agent --config /etc/nk3-agent/config.json";
        Restart = "always";
        RestartSec = "5s";
        # stdout/stderr go to the journal (systemd's default; stated for the reader): journalctl -u nk3-agent.
        StandardOutput = "journal";
        StandardError = "journal";
        SyslogIdentifier = "nk3-agent";

        # Root, on purpose: it runs nixos-rebuild (writes /nix/var/nix/profiles, /etc/nixos, the bootloader),
        # nix-channel for root, switch-to-configuration of an older generation on rollback, and reboots.
        User = "root";
        Group = "root";

        # Hardening: only what cannot break that job (nk3 docs/UPSTREAM.md#nixos-modules, "Hardening that breaks a root
        # nixos-rebuild agent"). Whatever the agent runs directly (switch-to-configuration during a rollback,
        # nix-channel, grub-reboot/bootctl) inherits these, so:
        #  - NOT ProtectSystem / ProtectHome / ReadWritePaths / PrivateTmp / PrivateDevices / ProtectKernel*:
        #    they need a private mount namespace, and an activation run from inside it would mount
        #    (/run/keys, /run/wrappers, …) in the agent's namespace only; ProtectSystem also makes /etc/nixos,
        #    /boot and /nix/var/nix/profiles read-only, ProtectHome hides /root/.nix-channels,
        #    PrivateDevices/DeviceAllow hide the disks from grub-install, ProtectKernelTunables makes efivars
        #    read-only (bootctl set-oneshot).
        #  - NOT CapabilityBoundingSet / NoNewPrivileges / RestrictSUIDSGID / ProtectHostname /
        #    SystemCallFilter: activation creates the setuid wrappers in /run/wrappers, sets the hostname,
        #    loads kernel modules and mounts file systems.
        #  - NOT UMask=0077: it would leak into activation (directories it creates without an explicit mode
        #    would become unreadable to services). The agent writes its key and state files with explicit
        #    0600/0700 modes instead, and tmpfiles enforces 0700 on the directories.
        #  - NOT MemoryDenyWriteExecute / SystemCallArchitectures: harmless for the agent, but inherited by
        #    whatever the activation of an arbitrary configuration runs.
        # What is set:
        # The agent needs AF_UNIX (D-Bus, nix-daemon, journald), AF_INET/AF_INET6 (its server, kubelet
        # healthz, fetches during evaluation) and AF_NETLINK (udevadm and ip in activation scripts).
        RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" "AF_NETLINK" ];
        # Nothing here needs realtime scheduling.
        RestrictRealtime = true;
        # Personality changes are only needed by i686 builds, which run in nix-daemon (NIX_REMOTE above).
        LockPersonality = true;
        # Many concurrent status requests (one agent serves 1,000 at once) need more than 1024 descriptors.
        LimitNOFILE = 65536;
      };
    };
  };
}

"""#
}
