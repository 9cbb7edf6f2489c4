import Foundation
import NK3Coordinator
import Yams

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
        // Encoded by Yams (every value quoted as YAML needs), keys in the order people read them.
        func str(_ s: String) -> Node { Node(s, Tag(.str), .doubleQuoted) }
        func map(_ pairs: [(String, Node)]) -> Node { Node(pairs.map { (Node($0.0), $0.1) }) }
        var top: [(String, Node)] = [
            ("cluster_name", str(options.clusterName)), ("join_address", str(names[0])),
            ("join_token", str("simulated-join-token")), ("nix_channel", str(options.channel)),
            ("pki_dir", str(pkiDir)), ("kubeconfig", str(kubeconfig)),
            ("disruption_budget", Node(String(options.disruptionBudget), Tag(.int))),
            ("servers", Node(names.filter { servers.contains($0) }.map(str))),
            ("ceph", map([("enabled", Node("true", Tag(.bool))), ("namespace", str("rook-ceph")), ("name", str("rook-ceph"))])),
        ]
        let timeouts = options.inventoryTimeouts ?? Self.defaultTimeouts(speed: speed, timings: options.timings)
        if !timeouts.isEmpty {
            top.append(("timeouts", map(InventoryKeys.timeouts.compactMap { key in
                timeouts[key].map { (key, Node(String($0), Tag(.int))) }
            })))
        }
        top.append(("watch_namespaces", Node([str("default"), str("kube-system")])))
        top.append(("nodes", map(names.enumerated().map { i, n in
            var hostvars: [(String, Node)] = [
                ("hostname", str(n)), ("agent_address", str("127.0.0.1")), ("agent_port", Node(String(ports[n]!), Tag(.int))),
            ]
            if let api = apiAddresses[n] { hostvars.append(("kube_api_address", str(api))) }
            hostvars += [
                ("initiator", Node(i == 0 ? "true" : "false", Tag(.bool))), ("boot_device", str("/dev/vda")),
                ("state_version", str("24.05")),
            ]
            return (n, map(hostvars))
        })))
        let header = """
            # [simulation] Inventory of a SIMULATED cluster written by nk3's simulator: every node is an in-memory
            # NixOS machine whose real nk3-agent listens on 127.0.0.1 (agent_address/agent_port hostvars below).

            """
        do {
            return header + (try Yams.serialize(node: map(top), width: -1))
        } catch {
            // Strings, integers and booleans only: emitting cannot fail for this shape.
            preconditionFailure("simulated inventory encoding failed: \(error)")
        }
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
