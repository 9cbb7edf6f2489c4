# NixOS VM test for nk3, for people with Nix and KVM (pkgs.testers.runNixOSTest):
#
#   nix build .#checks.x86_64-linux.vm-test -L                 # run it
#   nix build .#checks.x86_64-linux.vm-test.driverInteractive  # then ./result/bin/nixos-test-driver
#
# Three k3s servers (embedded etcd, https://docs.k3s.io/datastore/ha-embedded) with nk3-agent, and a coordinator VM that runs `nk3 apply`:
#   1. a harmless change (a file under /etc) on every node, with --action boot: every node reboots through
#      GRUB into the new generation, the rollout passes and every agent commits;
#   2. a change that breaks the kubelet on n2 only (an unknown --kubelet-arg): the rollout aborts with a
#      non-zero exit at n2, n3 is never touched, and n2's agent rolls back BY ITSELF when the confirm deadline
#      passes (k3s comes back, the node is Ready again, /etc/nixos holds the previous files).
#
# NOT RUN in this repository's CI (no KVM, no nixpkgs there); scripts/check-nix.sh only parses it.
#
# How rebuilding inside a VM works offline (the recipe of nixos/tests/nixos-rebuild-specialisations.nix):
# every node is built with system.includeBuildDependencies, substituters are off, NIX_PATH points at the
# nixpkgs the test was built from, and /etc/nixos/hardware-configuration.nix comes from nixos-generate-config.
# The nk3 template renders a configuration.nix that imports vm-base.nix (the node's whole VM setup, also
# imported by the host-side node definition so both evaluate to the same system) and vm-extra.nix (store paths
# of the agent package and the test PKI), both copied into /etc/nixos by the test before the first apply.
#
# nk3 CLI used (Sources/nk3; PKI layout of PKIStore):
#   nk3 certs init --dir DIR --cluster NAME            -> DIR/{ca.crt,ca.key,signing.key,signing.pub,clients/operator.*}
#   nk3 certs issue-agent NODE --address IP --dir DIR  -> DIR/agents/NODE.{crt,key}
#   nk3 apply --inventory FILE --action switch         -> exit 0 when the rollout completes, non-zero on abort
# The nodes boot through GRUB (virtualisation.useBootLoader), so the `--action boot` rollout below really
# reboots into the new generation; the other rollouts use --action switch. Unverified here (no KVM): that
# qemu-vm.nix's disk image with useBootLoader takes GRUB on /dev/vda as vm-base.nix configures it.
# The test PKI is minted at build time, so its private keys sit in the VM's Nix store: acceptable for a
# throwaway test cluster only. Real nodes get their keys from `nk3 bootstrap` into /var/lib/nk3-agent/tls.
{ pkgs
, nk3
, nk3-agent
, agentModule ? ../module.nix
}:

let
  lib = pkgs.lib;

  nodes = {
    n1 = { ip = "192.168.1.11"; init = true; };
    n2 = { ip = "192.168.1.12"; init = false; };
    n3 = { ip = "192.168.1.13"; init = false; };
  };
  coordinatorIP = "192.168.1.10";
  token = "nk3-vm-test-token";
  confirmTimeout = 120;

  # The cluster's test PKI, minted with nk3 itself (see the header for the assumed CLI).
  pki = pkgs.runCommand "nk3-vm-test-pki" { nativeBuildInputs = [ nk3 ]; } ''
    nk3 certs init --dir $out --cluster vm-test
    ${lib.concatStrings (lib.mapAttrsToList (name: n: ''
      nk3 certs issue-agent ${name} --address ${n.ip} --dir $out
    '') nodes)}
  '';
  # Import from derivation: the public signing key is needed at evaluation time for the module option.
  signingPublicKey = lib.removeSuffix "\n" (builtins.readFile "${pki}/signing.pub");

  pauseImage = pkgs.dockerTools.streamLayeredImage {
    name = "test.local/pause";
    tag = "local";
    contents = pkgs.buildEnv { name = "nk3-pause-env"; paths = [ pkgs.tini pkgs.coreutils ]; };
    config.Entrypoint = [ "/bin/tini" "--" "/bin/sleep" "inf" ];
  };

  # Everything a node needs to be a VM k3s server booting through GRUB: ./vm-base.nix applied to the node's
  # parameters. On the node, /etc/nixos/vm-base.nix is this small file next to a copy of ./vm-base.nix.
  vmBaseParams = name: n: {
    inherit name token;
    inherit (n) ip init;
    serverIP = nodes.n1.ip;
  };
  vmBaseApplied = name: n: builtins.toFile "vm-base-${name}.nix" ''
    import ./vm-base-fn.nix (builtins.fromJSON ${builtins.toJSON (builtins.toJSON (vmBaseParams name n))})
  '';

  # Store paths the in-VM configuration needs (impure evaluation inside the VM, so builtins.storePath works).
  vmExtra = name: pkgs.writeText "vm-extra-${name}.nix" ''
    { ... }:
    {
      services.nk3-agent.package = builtins.storePath "${nk3-agent}";
    }
  '';

  # The per-node template nk3 renders (Stencil, Jinja-like: node, hostvars, cluster). `revision` is the
  # harmless change; `break_kubelet` adds a kubelet flag that does not exist, so k3s fails to start.
  template = pkgs.writeText "configuration.nix.j2" ''
    { config, lib, pkgs, ... }:
    {
      imports = [
        ./hardware-configuration.nix
        <nixpkgs/nixos/modules/testing/test-instrumentation.nix>  # the test driver's backdoor, as on the host
        ./vm-base.nix
        ./vm-extra.nix
        ./nk3-agent.nix
      ];
      environment.etc."nk3-vm-test-revision".text = "{{ hostvars.revision }}";
    {% if hostvars.break_kubelet %}
      services.k3s.extraFlags = [ "--kubelet-arg=nk3-vm-test-no-such-flag=1" ];
    {% endif %}
    }
  '';

  inventory = { revision, breakOn ? null }: pkgs.writeText "inventory-r${toString revision}.yaml" ''
    cluster_name: vm-test
    join_address: ${nodes.n1.ip}
    join_token: ${token}
    nix_channel: nixos-unstable
    agent_port: 7443
    pki_dir: /root/pki
    kubeconfig: /root/kubeconfig.yaml
    template: ${template}
    disruption_budget: 1
    order: [ n1, n2, n3 ]
    timeouts:
      confirm: ${toString confirmTimeout}
      ready: 180
      rebuild: 1200
    watch_namespaces: [ kube-system ]
    nodes:
    ${lib.concatStrings (lib.mapAttrsToList (name: n: ''
      ${n.ip}:
        hostname: ${name}
        revision: ${toString revision}
        break_kubelet: ${lib.boolToString (breakOn == name)}
    '') nodes)}
  '';

  agentNode = name: n: { config, lib, pkgs, ... }: {
    imports = [ (import ./vm-base.nix (vmBaseParams name n)) agentModule ];
    # Boot through GRUB from the VM's disk (instead of qemu's direct kernel boot), so that a
    # `nixos-rebuild boot` and a reboot really switch generations (nixos/modules/virtualisation/qemu-vm.nix).
    virtualisation.useBootLoader = true;
    # Rebuilding inside the VM offline (see header).
    system.includeBuildDependencies = true;
    system.extraDependencies = [ pkgs.path pauseImage ];
    nix.nixPath = [ "nixpkgs=${pkgs.path}" "nixos-config=/etc/nixos/configuration.nix" ];
    virtualisation.memorySize = 3072;
    virtualisation.diskSize = 16384;
    virtualisation.writableStore = true;

    # The same settings the coordinator's generated nk3-agent.nix carries.
    services.nk3-agent = {
      enable = true;
      package = nk3-agent;
      nodeName = name;
      openFirewall = true;
      certFile = "/var/lib/nk3-agent/tls/agent.crt";
      keyFile = "/var/lib/nk3-agent/tls/agent.key";
      caFile = "/var/lib/nk3-agent/tls/ca.crt";
      signingPublicKeys = [ signingPublicKey ];
      confirmTimeout = confirmTimeout;
    };
  };
in
pkgs.testers.runNixOSTest {
  name = "nk3-rollout";

  nodes = (lib.mapAttrs agentNode nodes) // {
    coordinator = { lib, ... }: {
      environment.systemPackages = [ nk3 ];
      networking.useDHCP = false;
      networking.interfaces.eth1.ipv4.addresses = lib.mkForce [ { address = coordinatorIP; prefixLength = 24; } ];
      virtualisation.memorySize = 1024;
    };
  };

  testScript = ''
    nodes = {"n1": n1, "n2": n2, "n3": n3}
    vm_files = {
    ${lib.concatStrings (lib.mapAttrsToList (name: n: ''
      "${name}": ("${vmBaseApplied name n}", "${vmExtra name}"),
    '') nodes)}
    }

    # allow_reboot: `nk3 apply --action boot` reboots the nodes (qemu would otherwise exit on a reboot).
    coordinator.start()
    for m in nodes.values():
        m.start(allow_reboot=True)
    coordinator.wait_for_unit("multi-user.target")

    # Node keys go to /var/lib/nk3-agent/tls with 0600, as `nk3 bootstrap` does on real machines.
    for name, m in nodes.items():
        m.wait_for_unit("multi-user.target")
        m.succeed(
            "install -d -m 0700 /var/lib/nk3-agent/tls",
            f"install -m 0600 ${pki}/agents/{name}.crt /var/lib/nk3-agent/tls/agent.crt",
            f"install -m 0600 ${pki}/agents/{name}.key /var/lib/nk3-agent/tls/agent.key",
            "install -m 0600 ${pki}/ca.crt /var/lib/nk3-agent/tls/ca.crt",
            "systemctl restart nk3-agent",
        )
        m.wait_for_open_port(7443)
        m.succeed("nixos-generate-config")
        base, extra = vm_files[name]
        m.succeed(
            f"cp {base} /etc/nixos/vm-base.nix",
            "cp ${./vm-base.nix} /etc/nixos/vm-base-fn.nix",
            f"cp {extra} /etc/nixos/vm-extra.nix",
        )

    for m in nodes.values():
        m.wait_for_unit("k3s")
        m.succeed("${pauseImage} | k3s ctr image import -")
    n1.wait_until_succeeds("k3s kubectl get node n3", timeout=600)
    n1.wait_until_succeeds(
        "test $(k3s kubectl get nodes --no-headers | grep -c ' Ready ') -eq 3", timeout=600
    )

    # Coordinator: the PKI directory and a kubeconfig pointing at n1.
    coordinator.succeed(
        "cp -r ${pki} /root/pki && chmod -R u+w,go-rwx /root/pki && find /root/pki -name '*.key' -exec chmod 0600 {} +"
    )
    kubeconfig = n1.succeed("cat /etc/rancher/k3s/k3s.yaml").replace("127.0.0.1", "${nodes.n1.ip}")
    coordinator.succeed(f"cat > /root/kubeconfig.yaml <<'EOF'\n{kubeconfig}\nEOF\nchmod 0600 /root/kubeconfig.yaml")

    with subtest("first apply lands nk3's files everywhere and passes"):
        coordinator.succeed("nk3 apply --inventory ${inventory { revision = 1; }} --action switch >&2")
        for m in nodes.values():
            m.succeed("grep -q nk3-agent-module.nix /etc/nixos/nk3-agent.nix")
            m.succeed("test \"$(cat /etc/nk3-vm-test-revision)\" = 1")

    with subtest("a harmless change rolls through all three nodes with --action boot: GRUB boots the new generation"):
        boot_ids = {name: m.succeed("cat /proc/sys/kernel/random/boot_id").strip() for name, m in nodes.items()}
        coordinator.succeed("nk3 apply --inventory ${inventory { revision = 2; }} --action boot >&2")
        for name, m in nodes.items():
            m.wait_for_unit("multi-user.target")
            # Rebooted, into the generation the profile points at, through the GRUB menu nixos-rebuild wrote.
            m.succeed(f"test \"$(cat /proc/sys/kernel/random/boot_id)\" != {boot_ids[name]}")
            m.succeed("test \"$(readlink -f /run/booted-system)\" = \"$(readlink -f /nix/var/nix/profiles/system)\"")
            m.succeed("grep -q \"$(readlink -f /nix/var/nix/profiles/system)\" /boot/grub/grub.cfg")
            m.succeed("test \"$(cat /etc/nk3-vm-test-revision)\" = 2")
            m.succeed("systemctl is-active k3s")

    with subtest("breaking the kubelet on n2 aborts the rollout and n2 rolls back by itself"):
        gen_before = n2.succeed("readlink /nix/var/nix/profiles/system").strip()
        coordinator.fail("nk3 apply --inventory ${inventory { revision = 3; breakOn = "n2"; }} --action switch >&2")
        # n1 took revision 3; n3 was never touched, because the rollout stopped at n2.
        n1.succeed("test \"$(cat /etc/nk3-vm-test-revision)\" = 3")
        n3.succeed("test \"$(cat /etc/nk3-vm-test-revision)\" = 2")
        # Nobody confirms n2's change: within the confirm deadline its agent switches back on its own.
        n2.wait_until_succeeds(
            "test \"$(cat /etc/nk3-vm-test-revision)\" = 2 && systemctl is-active k3s",
            timeout=${toString (confirmTimeout * 4)},
        )
        n2.succeed(f"test \"$(readlink /run/current-system)\" = \"$(readlink -f /nix/var/nix/profiles/{gen_before})\"")
        n2.fail("grep -q nk3-vm-test-no-such-flag /etc/nixos/configuration.nix")
        n1.wait_until_succeeds(
            "test $(k3s kubectl get nodes --no-headers | grep -c ' Ready ') -eq 3", timeout=600
        )
        # No node is left cordoned.
        n1.fail("k3s kubectl get nodes --no-headers | grep -q SchedulingDisabled")

    for m in [coordinator, *nodes.values()]:
        m.shutdown()
  '';
}
