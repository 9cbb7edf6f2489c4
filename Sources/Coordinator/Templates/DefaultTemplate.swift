/// The configuration template used when the inventory names none: a k3s node in the style of the Python tool's
/// own template (grub on `boot_device`, k3s server or agent joining `join_address` with `join_token`,
/// `clusterInit` on the initiator, openssh, the `rbd` module for Rook/Ceph, htop and friends), which imports
/// `./nk3-agent.nix` so the agent stays enabled.
///
/// Hostvars it reads: `boot_device` (required), `initiator` (optional). `scripts/gen-jinja-fixtures.py` reads
/// the text between the raw-string delimiters below and renders it with real Jinja2 for the fixture tests, so
/// keep the delimiters on their own lines. It ends with two newlines: Jinja2 drops one, the file keeps one.
public enum DefaultTemplate {
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
    token = "{{ cluster.join_token }}";
{% if node.initiator %}    clusterInit = true;
{% else %}    serverAddr = "https://{{ cluster.join_address }}:6443";
{% endif %}  };
}


"""#
}
