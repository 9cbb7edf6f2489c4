/// The Nix files the coordinator ships to every node next to the generated `nk3-agent.nix`: the agent's NixOS
/// module (`nk3-agent-module.nix`) and the derivation that packages the prebuilt agent binary
/// (`nk3-agent-binary.nix`). Byte-identical copies of `nix/module.nix` and `nix/agent-binary.nix`, written by
/// `nix/embed-in-swift.sh`; `TemplateTests` fails when they differ.
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
# `settings.tls.*` are the same typed options (so `settings` cannot go around that), and the assertions
# check the values that end up in config.json.
#
# Ranges: `port` is 1…65535 and `confirmTimeout` 10…86400 seconds, exactly what the agent's config reader and
# nk3's inventory accept (nk3: Sources/Protocol/AgentLimits.swift). Tests/AgentTests/NixModuleEvalTests.swift
# evaluates this file with nixpkgs' lib.evalModules and fails when they disagree.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.nk3-agent;
  nftables = config.networking.nftables.enable;
  isV6 = src: lib.hasInfix ":" src;
  # An IPv4 or IPv6 address, optionally with a prefix length; nothing else, since the value lands in a firewall
  # command line (iptables/nft syntax).
  validSource = src:
    builtins.match "[0-9]{1,3}([.][0-9]{1,3}){3}(/[0-9]{1,2})?" src != null
    || builtins.match "[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*(/[0-9]{1,3})?" src != null;
  json = pkgs.formats.json { };

  storeDir = builtins.storeDir;

  # An absolute path given as a string. Deliberately not types.path: types.path also accepts path
  # literals, and a path literal such as ./agent.key is copied into /nix/store (world-readable).
  absolutePathString = lib.types.strMatching "/.*";

  # The agent's limits (nk3: Sources/Protocol/AgentLimits.swift).
  portType = lib.types.ints.between 1 65535;
  confirmTimeoutType = lib.types.ints.between 10 86400;

  keyPathDescription = what: ''
    Absolute path (a string, not a Nix path) of the ${what} on the node. It must not point into the
    Nix store. `nk3 bootstrap` copies it to /var/lib/nk3-agent/tls with mode 0600.
  '';

  keyPathOption = what: lib.mkOption {
    type = lib.types.nullOr absolutePathString;
    default = null;
    example = "/var/lib/nk3-agent/tls/agent.key";
    description = keyPathDescription what;
  };

  # settings.tls.<name>: the same type, defaulting to the top-level option.
  settingsKeyPathOption = name: what: lib.mkOption {
    type = lib.types.nullOr absolutePathString;
    default = cfg.${name};
    defaultText = lib.literalExpression "config.services.nk3-agent.${name}";
    description = keyPathDescription what;
  };

  # What goes into config.json (keys fixed by the agent's --config reader). The constrained keys (port,
  # confirmTimeoutSeconds, tls, signingPublicKeys) are declared options of `settings`, defaulting to the
  # top-level options; everything else comes from the options below, overridden by free-form `settings`.
  optionSettings = {
    nodeName = cfg.nodeName;
    listenAddress = cfg.listenAddress;
    stateDir = cfg.stateDir;
    configDir = "/etc/nixos";
    k3sUnit = cfg.k3sUnit;
    trialBoot = trialBootLoader;
  };

  # Which one-shot mechanism the agent uses for a trial boot (docs/RELIABILITY.md#trial-boot): systemd-boot's
  # `bootctl set-oneshot nixos-generation-N.conf` (entry names from nixpkgs
  # nixos/modules/system/boot/loader/systemd-boot/systemd-boot-builder.py), or GRUB's `grub-reboot`, which
  # needs the GRUB package on the agent's PATH (config.system.build.grub, null for devices = [ "nodev" ]).
  grubInstalled = config.boot.loader.grub.enable && (config.system.build.grub or null) != null;
  trialBootLoader =
    if !cfg.trialBoot then "off"
    else if config.boot.loader.systemd-boot.enable then "systemd-boot"
    else if grubInstalled then "grub"
    else "off";
  agentSettings = lib.recursiveUpdate optionSettings cfg.settings;
  tls = cfg.settings.tls;

  configFile = json.generate "nk3-agent-config.json" agentSettings;

  keyPaths = lib.filter (p: p != null) [ tls.certFile tls.keyFile tls.caFile ];
  showPath = p: if p == null then "null (not set)" else "\"${p}\"";

  # base64 of 32 raw Ed25519 public-key bytes: 43 base64 characters and one '=' of padding.
  isSigningKey = k: builtins.match "[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=" k != null;
  signingKeys = cfg.settings.signingPublicKeys;
in
{
  options.services.nk3-agent = {
    enable = lib.mkEnableOption "nk3-agent, which applies signed NixOS configuration bundles sent by the nk3 coordinator over mutual TLS";

    package = lib.mkOption {
      type = lib.types.package;
      # nk3's generated nk3-agent.nix sets this to the prebuilt agent binary nk3 placed on the node
      # (./nk3-agent-binary.nix). Otherwise: a nixpkgs that carries nk3-agent (an overlay), or a clear stop.
      default = pkgs.nk3-agent or (throw ''
        services.nk3-agent.package is not set and this nixpkgs has no `nk3-agent` package.
        nk3's generated /etc/nixos/nk3-agent.nix sets it to the agent binary `nk3 bootstrap` placed on the
        node (nk3-agent-binary.nix); without that file, set it yourself, for example to
          pkgs.callPackage /path/to/nk3/nix/agent-binary.nix { binary = /path/to/nk3-agent; }
        or use the nk3 flake's nixosModules.default (builds from source; needs Swift >= 6.1), or add an
        overlay that provides pkgs.nk3-agent. See docs/DEPLOYING.md, "Getting the agent onto the node".
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
      type = portType;
      default = 7443;
      description = "TCP port of the agent's HTTPS (mutual TLS) server (1…65535; 0 is refused by the agent).";
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Open `port` in the NixOS firewall (every connection still needs a client certificate from the cluster CA).";
    };

    allowedSources = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [ "192.0.2.10" "2001:db8::/64" ];
      description = ''
        With `openFirewall`: open `port` only to these IPv4/IPv6 addresses or CIDR prefixes (the coordinator's
        workstations) instead of to every source. A connection from anywhere else is dropped by the kernel
        before the agent sees it, so a flood from elsewhere costs the agent nothing. Empty: open to all.
        Written as nixos-fw rules (iptables) or as nftables input rules when networking.nftables.enable is set,
        as nixpkgs' nixos/modules/services/networking/firewall-iptables.nix and firewall-nftables.nix expect.
      '';
    };

    certFile = keyPathOption "agent's server certificate (PEM)";
    keyFile = keyPathOption "agent's private key (PEM, mode 0600)";
    caFile = keyPathOption "cluster CA certificate (PEM) that client certificates must chain to";

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
      type = confirmTimeoutType;
      default = 600;
      description = ''
        Seconds (10…86400) the agent waits for a signed confirm after a successful rebuild (or after the
        reboot into the new generation) before it rolls back by itself.
      '';
    };

    trialBoot = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = ''
        Run every `boot` apply as a trial boot: after `nixos-rebuild boot` the agent makes the PREVIOUS
        generation the boot loader's default again and sets the new one as a one-shot entry (GRUB:
        `grub-reboot`; systemd-boot: `bootctl set-oneshot nixos-generation-N.conf`); only the signed confirm
        makes the new generation the default. A new generation whose kernel or initrd never boots, or that
        never starts the agent, is left at the next reset (see `watchdog`, or `panic=N` in boot.kernelParams):
        the loader boots the previous generation. With GRUB this sets `boot.loader.grub.default = "saved"`
        (nixos/modules/system/boot/loader/grub/grub.nix; grub-reboot works only with a saved default).
        Without GRUB (installed) or systemd-boot, or when false, the agent uses the dead-man rollback only.
      '';
    };

    watchdog = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "30s";
      description = ''
        Sets `systemd.watchdog.runtimeTime` (RuntimeWatchdogSec=, systemd-system.conf(5)): systemd pets the
        hardware watchdog, and a machine that hangs after the kernel has started systemd (a wedged kernel, a
        stuck boot) is reset within this time, which then boots the previous generation of a trial boot. It
        does not help when the kernel never gets as far as starting systemd; for a kernel panic add `panic=N`
        to boot.kernelParams. Null leaves the watchdog as the rest of the configuration sets it.
      '';
    };

    settings = lib.mkOption {
      type = lib.types.submodule {
        freeformType = json.type;
        # Keys with constraints are typed here exactly like the options above, so a `settings` value goes
        # through the same checks (a path literal in settings.tls is refused like one in keyFile).
        options = {
          port = lib.mkOption {
            type = portType;
            default = cfg.port;
            defaultText = lib.literalExpression "config.services.nk3-agent.port";
            description = "The agent's port in config.json.";
          };
          confirmTimeoutSeconds = lib.mkOption {
            type = confirmTimeoutType;
            default = cfg.confirmTimeout;
            defaultText = lib.literalExpression "config.services.nk3-agent.confirmTimeout";
            description = "The agent's default confirm timeout in config.json.";
          };
          signingPublicKeys = lib.mkOption {
            type = lib.types.listOf lib.types.str;
            default = cfg.signingPublicKeys;
            defaultText = lib.literalExpression "config.services.nk3-agent.signingPublicKeys";
            description = "The agent's pinned signing keys in config.json.";
          };
          tls = {
            certFile = settingsKeyPathOption "certFile" "agent's server certificate (PEM)";
            keyFile = settingsKeyPathOption "keyFile" "agent's private key (PEM, mode 0600)";
            caFile = settingsKeyPathOption "caFile" "cluster CA certificate (PEM)";
          };
        };
      };
      default = { };
      example = lib.literalExpression ''
        {
          # k3s binds the kubelet's healthz to 127.0.0.1:10248 (the agent's default); on an IPv6-only
          # node it binds [::1] instead (k3s-io/k3s pkg/daemons/agent/agent_linux.go).
          kubeletHealthzURL = "http://127.0.0.1:10248/healthz";
          commands.nixosRebuild = "/run/current-system/sw/bin/nixos-rebuild";
        }
      '';
      description = ''
        Free-form agent configuration (RFC 42), merged recursively OVER the values derived from the options
        above and written to /etc/nk3-agent/config.json. Use it for agent keys without a dedicated option
        (kubeletHealthzURL, commands, paths, …). `port`, `confirmTimeoutSeconds`, `signingPublicKeys` and
        `tls.*` are typed like the options above and default to them.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = lib.all validSource cfg.allowedSources;
        message = ''
          services.nk3-agent.allowedSources must hold IPv4 or IPv6 addresses or CIDR prefixes (e.g. "192.0.2.10",
          "10.0.0.0/24", "2001:db8::/64"); not: ${lib.concatMapStringsSep ", " builtins.toJSON
            (lib.filter (s: !validSource s) cfg.allowedSources)}.
        '';
      }
      {
        assertion = tls.certFile != null && tls.keyFile != null && tls.caFile != null;
        message = ''
          services.nk3-agent is enabled but its TLS files are not all set: certFile = ${showPath tls.certFile},
          keyFile = ${showPath tls.keyFile}, caFile = ${showPath tls.caFile}. Set all three to absolute paths
          (the nk3 defaults are /var/lib/nk3-agent/tls/{agent.crt,agent.key,ca.crt}, placed there by
          `nk3 bootstrap`).
        '';
      }
      {
        assertion = lib.all (p: !(lib.hasPrefix "${storeDir}/" p)) keyPaths;
        message = ''
          services.nk3-agent: certFile / keyFile / caFile (and settings.tls.*) must not be in the Nix store
          (${storeDir} is world-readable); got ${lib.concatMapStringsSep ", " showPath keyPaths}.
          Keep them under ${cfg.stateDir}/tls.
        '';
      }
      {
        assertion = signingKeys != [ ];
        message = ''
          services.nk3-agent.signingPublicKeys is empty: the agent would accept no command at all.
          Add the cluster's Ed25519 signing public key (base64 of 32 bytes; `nk3 certs init` prints it).
        '';
      }
      {
        assertion = lib.all isSigningKey signingKeys;
        message = ''
          services.nk3-agent.signingPublicKeys must each be the base64 of 32 raw Ed25519 bytes (44 characters
          ending in '='); these are not: ${lib.concatStringsSep ", " (lib.filter (k: !(isSigningKey k)) signingKeys)}.
        '';
      }
    ];

    # Trial boot with GRUB: grub-reboot needs a saved default (grub.nix: "saved" uses the saved entry).
    boot.loader.grub.default = lib.mkIf (trialBootLoader == "grub") "saved";
    systemd.watchdog.runtimeTime = lib.mkIf (cfg.watchdog != null) cfg.watchdog;

    # Public configuration only (paths and public keys): fine in the store.
    environment.etc."nk3-agent/config.json".source = configFile;

    # 0700 state and TLS directories, mode enforced at every boot/activation ('d' adjusts the mode of an
    # existing directory). Not StateDirectory=, because stateDir may be moved away from /var/lib.
    systemd.tmpfiles.rules = [
      "d ${cfg.stateDir} 0700 root root -"
      "d ${cfg.stateDir}/tls 0700 root root -"
    ];

    # Open to all: the plain port list. Open to some: one accept rule per source, in the chain nixpkgs' firewall
    # jumps to for accepted packets (nixos-fw-accept, firewall-iptables.nix) or in its nftables input rules
    # (networking.firewall.extraInputRules, firewall-nftables.nix).
    networking.firewall.allowedTCPPorts = lib.mkIf (cfg.openFirewall && cfg.allowedSources == [ ]) [ cfg.settings.port ];
    networking.firewall.extraCommands = lib.mkIf (cfg.openFirewall && cfg.allowedSources != [ ] && !nftables)
      (lib.concatMapStrings (src: ''
        ${if isV6 src then "ip6tables" else "iptables"} -A nixos-fw -p tcp --dport ${toString cfg.settings.port} -s ${src} -j nixos-fw-accept
      '') cfg.allowedSources);
    networking.firewall.extraInputRules = lib.mkIf (cfg.openFirewall && cfg.allowedSources != [ ] && nftables)
      (lib.concatMapStrings (src: ''
        ${if isV6 src then "ip6" else "ip"} saddr ${src} tcp dport ${toString cfg.settings.port} accept comment "nk3-agent"
      '') cfg.allowedSources);

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
      # tar/xz/gzip, flakes need git, git+ssh and ssh substituters need ssh) plus systemctl/bootctl/systemd-run
      # (systemd) for reboot, unit state and trial boots, and GRUB's tools (grub-reboot) when GRUB is installed.
      # GRUB: nixpkgs has no boot.loader.grub.package option; nixos/modules/system/boot/loader/grub/grub.nix
      # publishes the GRUB it installs as config.system.build.grub, which is null for devices = [ "nodev" ]
      # (a menu only, nothing installed) and absent when GRUB is disabled.
      path = [
        config.system.build.nixos-rebuild
        config.nix.package.out
        config.systemd.package
        config.programs.ssh.package
        pkgs.coreutils
        pkgs.gnutar
        pkgs.xz.bin
        pkgs.gzip
        pkgs.gitMinimal
        pkgs.util-linux
      ] ++ lib.optional (config.boot.loader.grub.enable && (config.system.build.grub or null) != null)
        config.system.build.grub;

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

        # Hardening: only what cannot break that job (the systemd.exec(5) semantics of each setting, applied
        # to a root nixos-rebuild). Whatever the agent runs directly (switch-to-configuration during a
        # rollback, nix-channel, grub-reboot/bootctl) inherits these, so:
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

    /// The prebuilt-binary derivation (byte-identical to `nix/agent-binary.nix`).
    public static let binaryDerivation = #"""
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

"""#
}
