import Foundation
import Yams

/// The cluster inventory: the Python tool's YAML format, accepted unchanged, plus nk3's own optional keys.
///
/// Top level (see `docs` in `InventoryKeys`):
/// - required, from the Python tool: `join_address`, `join_token`, `nix_channel`, `nodes: {address: hostvars}`;
///   optional `watch_namespaces` (default none).
/// - nk3's own, all optional, snake_case at the top level: `cluster_name`, `agent_port`, `pki_dir`, `kubeconfig`,
///   `kube_context`, `disruption_budget`, `ceph`, `template`, `timeouts`, `servers`, `order`, `state_version`.
/// - hostvars nk3 reads itself: `hostname`, `agent_port` (overrides the top level's), `state_version` (overrides
///   the top level's), `role`, `agent_address`.
/// - template extras: everything under `vars:`, and the well-known extras in `InventoryKeys.knownExtras`
///   (`default_gateway`, `nameservers`, `domain`, ...). Any other top-level key is an error with a did-you-mean,
///   so a typo such as `join_adress` never silently renders an empty value.
public struct Inventory: Sendable {
    /// The file name used in error messages and as the default cluster name's source.
    public var file: String
    /// Directory relative paths (`template`, `pki_dir`) are resolved against.
    public var directory: String
    /// `join_address`: the k3s server address nodes join (`serverAddr`).
    public var joinAddress: String
    /// `join_token`: the k3s cluster token.
    public var joinToken: String
    /// `nix_channel`, e.g. `nixos-24.05`: enforced on `--upgrade`.
    public var nixChannel: String
    /// `watch_namespaces`: namespaces whose DaemonSets and Deployments must be healthy.
    public var watchNamespaces: [String]
    /// Every node, in inventory order.
    public var nodes: [InventoryNode]
    /// Node names in rollout order (`order:` first, then the rest in inventory order).
    public var rolloutOrder: [String]
    /// How `isServer` was decided (for status output and docs).
    public var serverSelection: ServerSelection
    /// `cluster_name` (default: the inventory file's name without extension).
    public var clusterName: String
    /// `agent_port` (default 7443), within `AgentLimits.port`. A node's own `agent_port` hostvar overrides it:
    /// use `InventoryNode.agentPort`.
    public var agentPort: Int
    /// `state_version`: the NixOS release the cluster's machines were first installed with (`system.stateVersion`),
    /// if given. A node's own `state_version` hostvar overrides it: use `InventoryNode.stateVersion`.
    public var stateVersion: String?
    /// `pki_dir`, resolved against `directory` (default `certs/<cluster_name>`).
    public var pkiDirectory: String
    /// `kubeconfig` path, if given (otherwise `KUBECONFIG` / `~/.kube/config`).
    public var kubeconfig: String?
    /// `kube_context`, if given (otherwise the kubeconfig's current context).
    public var kubeContext: String?
    /// `disruption_budget` (default 1): nodes disrupted at once, at most.
    public var disruptionBudget: Int
    /// `ceph` gate settings.
    public var ceph: CephSettings
    /// `template`, resolved against `directory`; nil means the built-in `DefaultTemplate`.
    public var templatePath: String?
    /// `timeouts`, in seconds in the file.
    public var timeouts: Timeouts
    /// Every top-level key as written, in order: the template's `cluster` scope.
    public var topLevel: [InventoryEntry]
    /// `vars:` entries (also reachable as `cluster.vars` and `vars` in templates).
    public var vars: [InventoryEntry]
    /// `health_rule` (default `available`): which rule makes a DaemonSet or Deployment healthy in the gates.
    public var healthRule: WorkloadHealthRule = .available
    /// `rollout_log_dir`, `window`, `gates`: how a long rollout is operated.
    public var operate = OperateSettings()
    /// `agent_binary`, resolved against `directory`: a release nk3-agent that every node runs. Rollouts upload it
    /// to a node that lacks it and pin it in `nk3-agent.nix` by its SHA-256, so agents upgrade with the next
    /// apply; nil: nodes keep the binary `nk3 bootstrap` placed.
    public var agentBinaryPath: String?
    /// `flake`: nodes build a flake (`flake.nix` and `flake.lock` beside configuration.nix) instead of the
    /// channel; nil: the channel flow.
    public var flake: FlakeMode?

    /// Flake mode's files on the coordinator.
    public struct FlakeMode: Sendable, Hashable {
        /// The `flake.nix` template (`flake: PATH`, resolved against `directory`); nil: `DefaultFlakeTemplate`.
        public var templatePath: String?
        /// `flake.lock` in the inventory's directory: when present, the lock every node gets.
        public var lockPath: String
    }

    /// The node with this name or address, if any.
    public func node(_ nameOrAddress: String) -> InventoryNode? {
        nodes.first { $0.name == nameOrAddress } ?? nodes.first { $0.address == nameOrAddress }
    }

    /// Nodes in rollout order.
    public var nodesInRolloutOrder: [InventoryNode] { rolloutOrder.compactMap { node($0) } }

    /// How server (control-plane) nodes were chosen.
    public enum ServerSelection: String, Sendable, Hashable {
        /// An explicit `servers:` list.
        case explicit
        /// Some node has a `role` hostvar: `role: agent` nodes are agents, every other node a server.
        case roleHostvar = "role-hostvar"
        /// Neither `servers:` nor `role` hostvars: every node is a server, as in the Python tool's clusters (the
        /// initiator runs `clusterInit`, the others join with `serverAddr`); also the safe choice for quorum.
        case allNodes = "all-nodes"
    }

    /// Reads and parses an inventory file. Nothing is contacted; an invalid file throws before anything happens.
    public static func load(path: String) throws(InventoryError) -> Inventory {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw InventoryError(
                code: .unreadable, message: "cannot read inventory file: \(error.localizedDescription)",
                file: path, line: 0, column: 0, key: "")
        }
        return try parse(yaml: text, file: path)
    }

    /// Parses inventory YAML; `file` names it in errors and anchors relative paths.
    public static func parse(yaml: String, file: String) throws(InventoryError) -> Inventory {
        var parser = InventoryParser(file: file)
        return try parser.parse(yaml)
    }
}

/// One node of the inventory.
public struct InventoryNode: Sendable, Hashable {
    /// The key under `nodes:` (IPv4/IPv6 address or hostname): where the agent is reached.
    public var address: String
    /// Node (and Kubernetes node) name: the `hostname` hostvar, else the UUIDv5 of the address (`UUIDv5.nodeName`).
    public var name: String
    /// Every hostvar as written (`initiator`, `boot_device`, `interface`, ...), in order.
    public var hostvars: [InventoryEntry]
    /// Whether this node runs a k3s server (counts for etcd quorum).
    public var isServer: Bool
    /// The port of this node's agent: its `agent_port` hostvar, else the inventory's `agent_port`, else 7443.
    /// The generated `nk3-agent.nix` configures the agent with it and the coordinator connects to it.
    public var agentPort: Int
    /// `system.stateVersion` for this node: its `state_version` hostvar, else the inventory's `state_version`;
    /// nil when neither is given (the default template then refuses to render: NixOS must keep the release it
    /// was first installed with, nixpkgs nixos/modules/misc/version.nix). `nk3 bootstrap` can read it from the
    /// machine (`nixos-version`'s release is NOT it; the machine's configuration.nix or
    /// `nix-instantiate --eval '<nixpkgs/nixos>' -A config.system.stateVersion` is) and record it here.
    public var stateVersion: String?

    /// Makes a node.
    public init(
        address: String, name: String, hostvars: [InventoryEntry], isServer: Bool, agentPort: Int = 7443,
        stateVersion: String? = nil
    ) {
        self.address = address
        self.name = name
        self.hostvars = hostvars
        self.isServer = isServer
        self.agentPort = agentPort
        self.stateVersion = stateVersion
    }

    /// The hostvar `key`, if present.
    public subscript(hostvar key: String) -> InventoryValue? { hostvars.first { $0.key == key }?.value }
}

/// `ceph:` gate settings.
public struct CephSettings: Sendable, Hashable {
    /// Whether the Ceph HEALTH gate runs (default: true when a `ceph:` map is present, else false).
    public var enabled: Bool
    /// Namespace of the Rook CephCluster (default `rook-ceph`).
    public var namespace: String
    /// CephCluster name (nil: the only one in the namespace).
    public var name: String?

    /// Makes settings.
    public init(enabled: Bool = false, namespace: String = "rook-ceph", name: String? = nil) {
        self.enabled = enabled
        self.namespace = namespace
        self.name = name
    }
}

/// `timeouts:` in seconds; every wait in a rollout has one.
public struct Timeouts: Sendable, Hashable {
    /// Draining a node (evictions retried under PDBs). Default 600 s.
    public var drain: Duration = .seconds(600)
    /// From reboot command until the agent answers with a new boot id. Default 900 s.
    public var reboot: Duration = .seconds(900)
    /// Until kubelet is Ready. Default 600 s.
    public var ready: Duration = .seconds(600)
    /// Until every health gate passes. Default 1200 s.
    public var gates: Duration = .seconds(1200)
    /// The agent's confirm deadline (it rolls back by itself after it), whole seconds within
    /// `AgentLimits.confirmTimeoutSeconds`. Default 3600 s.
    public var confirm: Duration = .seconds(3600)
    /// One `nixos-rebuild`. Default 3600 s.
    public var rebuild: Duration = .seconds(3600)

    /// Defaults.
    public init() {}
}
