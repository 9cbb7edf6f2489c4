# One VM-test node's own NixOS settings (a k3s server with embedded etcd, booting through GRUB), shared by
# the host-side node definition in vm-test.nix and by the node's /etc/nixos, where the test copies this file
# as vm-base-fn.nix next to a vm-base.nix that applies it to the node's parameters. No store paths and no
# <nixpkgs> lookups, so both evaluate to the same system. Evaluated with the stand-ins of stand-ins.nix by
# Tests/AgentTests/NixModuleEvalTests.swift (the VM test itself needs KVM and does not run in CI).
#
#   node = { name = "n1"; ip = "192.168.1.11"; init = true; serverIP = "192.168.1.11"; token = "…"; }
node:
{ lib, ... }:
{
  # GRUB on the VM's disk, so that `nixos-rebuild boot` + reboot really boots the new generation
  # (the host side sets virtualisation.useBootLoader; nixos/modules/virtualisation/qemu-vm.nix).
  boot.loader.grub.enable = true;
  boot.loader.grub.device = "/dev/vda";
  documentation.enable = false;
  networking.hostName = node.name;
  networking.useDHCP = false;
  networking.interfaces.eth1.ipv4.addresses = lib.mkForce [ { address = node.ip; prefixLength = 24; } ];
  networking.firewall.allowedTCPPorts = [ 2379 2380 6443 10250 ];
  networking.firewall.allowedUDPPorts = [ 8472 ];
  networking.firewall.trustedInterfaces = [ "flannel.1" ];
  nix.settings.substituters = lib.mkForce [ ];
  nix.settings.connect-timeout = 1;
  services.k3s = {
    enable = true;
    role = "server";
    token = node.token;
    clusterInit = node.init;
    serverAddr = if node.init then "" else "https://${node.serverIP}:6443";
    extraFlags = [
      "--disable" "coredns" "--disable" "local-storage" "--disable" "metrics-server"
      "--disable" "servicelb" "--disable" "traefik"
      "--node-ip" node.ip "--pause-image" "test.local/pause:local"
    ];
  };
}
