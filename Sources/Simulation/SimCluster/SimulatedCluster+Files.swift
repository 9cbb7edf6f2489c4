import Foundation
import NK3Coordinator

/// The files a simulated cluster writes: its inventory and the nodes' unmanaged hardware configuration.
extension SimulatedCluster {
    static let hardwareConfiguration = """
        # [simulation] hardware-configuration.nix of a simulated node (not managed by nk3).
        { config, lib, modulesPath, ... }:
        {
          imports = [ (modulesPath + "/profiles/qemu-guest.nix") ];
          boot.initrd.availableKernelModules = [ "virtio_pci" "virtio_blk" "ahci" ];
          fileSystems."/" = { device = "/dev/vda1"; fsType = "ext4"; };
          swapDevices = [ ];
        }

        """

    /// The inventory: the Python tool's keys plus nk3's. All agents are on 127.0.0.1, so nodes are keyed by
    /// hostname and carry the hostvars `agent_address: 127.0.0.1` and `agent_port: <port>`; each k3s server names its
    /// own simulated API endpoint in `kube_api_address`.
    static func inventoryYAML(
        names: [String], servers: Set<String>, apiAddresses: [String: String], ports: [String: Int], options: Options,
        speed: SimulationSpeed,
        pkiDir: String, kubeconfig: String
    ) -> String {
        var y = """
            # [simulation] Inventory of a SIMULATED cluster written by nk3's simulator: every node is an in-memory
            # NixOS machine whose real nk3-agent listens on 127.0.0.1 (agent_address/agent_port hostvars below).
            cluster_name: \(options.clusterName)
            join_address: \(names[0])
            join_token: simulated-join-token
            nix_channel: \(options.channel)
            pki_dir: \(pkiDir)
            kubeconfig: \(kubeconfig)
            disruption_budget: \(options.disruptionBudget)
            servers:

            """
        for n in names where servers.contains(n) { y += "  - \(n)\n" }
        y += "ceph:\n  enabled: true\n  namespace: rook-ceph\n  name: rook-ceph\n"
        let timeouts = options.inventoryTimeouts ?? Self.defaultTimeouts(speed: speed, timings: options.timings)
        if !timeouts.isEmpty {
            y += "timeouts:\n"
            for key in InventoryKeys.timeouts { if let v = timeouts[key] { y += "  \(key): \(v)\n" } }
        }
        y += "watch_namespaces:\n  - default\n  - kube-system\nnodes:\n"
        for (i, n) in names.enumerated() {
            y += "  \(n):\n"
            y += "    hostname: \(n)\n"
            y += "    agent_address: 127.0.0.1\n"
            y += "    agent_port: \(ports[n]!)\n"
            if let api = apiAddresses[n] { y += "    kube_api_address: \(api)\n" }
            y += "    initiator: \(i == 0 ? "true" : "false")\n"
            y += "    boot_device: /dev/vda\n"
            y += "    state_version: \"24.05\"\n"
        }
        return y
    }

    /// Timeouts scaled to the simulation: generous multiples of the simulated durations, at least 30 s real.
    static func defaultTimeouts(speed: SimulationSpeed, timings: SimulatedTimings) -> [String: Int] {
        if case .factor(let f) = speed, f < 2 { return [:] }  // real time: the inventory's defaults fit
        func real(_ simulated: TimeInterval) -> Int { max(30, Int((speed.realSeconds(simulated) * 10).rounded(.up))) }
        return [
            "drain": real(timings.podStartup * 20),
            "reboot": real(timings.rebootDowntime * 3),
            "ready": real(timings.kubeletReadyAfterBoot * 4),
            "gates": real(600),
            "confirm": real(1800),
            "rebuild": real(timings.rebuild * 10),
        ]
    }
}
