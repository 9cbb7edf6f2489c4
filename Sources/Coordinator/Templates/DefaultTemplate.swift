/// The configuration template used when the inventory names none: a k3s node in the style of the Python tool's
/// own template (grub on `boot_device`, k3s server or agent joining `join_address`, `clusterInit` on the
/// initiator, openssh, the `rbd` module for Rook/Ceph, htop and friends), which imports `./nk3-agent.nix` so the
/// agent stays enabled.
///
/// Differences from the Python tool's template: the k3s join token is read from `tokenFile`
/// (`DefaultTemplate.tokenFile`, written 0600 by `nk3 bootstrap`) instead of being written into configuration.nix,
/// which would put it in the world-readable Nix store (nixpkgs nixos/modules/services/cluster/k3s: `token` "will
/// be readable by every user", `tokenFile` is passed as --token-file); and `system.stateVersion` is carried from
/// the `state_version` hostvar or inventory key, because configuration.nix is replaced and NixOS must keep the
/// release it was first installed with (nixos/modules/misc/version.nix). A template of your own that still sets
/// `services.k3s.token` keeps working.
///
/// Hostvars it reads: `boot_device` (required), `state_version` (required, here or at the inventory's top level),
/// `initiator` (optional). `scripts/gen-jinja-fixtures.py` reads
/// the text between the raw-string delimiters below and renders it with real Jinja2 for the fixture tests, so
/// keep the delimiters on their own lines. It ends with two newlines: Jinja2 drops one, the file keeps one.
public enum DefaultTemplate {
    /// Where the default template's k3s reads the join token (`services.k3s.tokenFile`).
    public static let tokenFile = "/etc/nk3/k3s-token"

    /// The template text (Jinja2 dialect, see `JinjaTemplate`).
    public static let source = #"""
# Rendered by nk3 for {{ node.name }} ({{ node.address }}) from the cluster inventory.
# Changes made on the node are replaced by the next rollout: edit the template instead.
{ config, pkgs, lib, ... }:

{
  imports = [
    ./hardware-configuration.nix
    ./nk3-agent.nix
  ];

  boot.loader.grub.enable = true;
  boot.loader.grub.devices = ["{{ node.boot_device }}"];
  boot.tmp.cleanOnBoot = true;
  boot.kernelModules = [ "rbd" ];

  # The NixOS release this machine was first installed with; never change it on an installed machine.
  system.stateVersion = "{% if node.state_version %}{{ node.state_version }}{% else %}{{ cluster.state_version }}{% endif %}";

  environment.systemPackages = with pkgs; [
    htop
    vim
    git
    curl
    jq
    lsof
  ];

  networking.hostName = "{{ node.name }}";
  networking.firewall.allowedTCPPorts = [ 6443 2379 2380 10250 ];
  networking.firewall.allowedUDPPorts = [ 8472 ];

  services.openssh.enable = true;
  services.openssh.settings.PermitRootLogin = "prohibit-password";
  services.timesyncd.enable = true;

  services.k3s = {
    enable = true;
    role = "{% if node.is_server %}server{% else %}agent{% endif %}";
    # Written 0600 by `nk3 bootstrap`; kept out of configuration.nix so it never lands in the Nix store.
    tokenFile = "/etc/nk3/k3s-token";
{% if node.initiator %}    clusterInit = true;
{% else %}    serverAddr = "https://{{ cluster.join_address }}:6443";
{% endif %}  };
}


"""#
}
