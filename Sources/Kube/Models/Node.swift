import Foundation

/// A `v1` Node: the fields nk3 reads (conditions, unschedulable, annotations, nodeInfo) — docs/UPSTREAM.md#nodes.
public struct Node: Codable, Sendable, Hashable {
    /// `v1`.
    public var apiVersion: String? = "v1"
    /// `Node`.
    public var kind: String? = "Node"
    /// Metadata (name, labels, annotations, resourceVersion).
    public var metadata: ObjectMeta
    /// Spec.
    public var spec: NodeSpec?
    /// Status.
    public var status: NodeStatus?

    /// Makes a node.
    public init(metadata: ObjectMeta, spec: NodeSpec? = NodeSpec(), status: NodeStatus? = NodeStatus()) {
        self.metadata = metadata
        self.spec = spec
        self.status = status
    }

    /// The node name ("" if missing).
    public var name: String { metadata.name ?? "" }
    /// `spec.unschedulable` (absent means false: it is `omitempty`, docs/UPSTREAM.md#nodes).
    public var isUnschedulable: Bool { spec?.unschedulable ?? false }
    /// The `Ready` condition, if reported.
    public var readyCondition: KubeCondition? { status?.conditions?.first { $0.type == "Ready" } }
    /// Ready condition True (any reason).
    public var isReady: Bool { readyCondition?.isTrue ?? false }
    /// `status.nodeInfo.bootID` (changes on every reboot).
    public var bootID: String? { status?.nodeInfo?.bootID }
    /// `status.nodeInfo.kernelVersion`.
    public var kernelVersion: String? { status?.nodeInfo?.kernelVersion }
    /// An annotation's value.
    public func annotation(_ key: String) -> String? { metadata.annotations?[key] }

    /// Who set `spec.unschedulable`, from `metadata.managedFields` (e.g. `nk3`, or `kubectl` / `kubectl-cordon`
    /// for a person's `kubectl cordon`); nil when the API records no manager for it.
    public var unschedulableManager: String? { metadata.manager(of: ["spec", "unschedulable"]) }

    /// Whether nk3 holds this node's cordon: it is cordoned, and `spec.unschedulable` was set by nk3's field manager
    /// where managedFields say who set it — `kubectl uncordon` keeps nk3's annotations, so after a person's
    /// uncordon and cordon the annotations alone would lie (kubectl pkg/drain/cordon.go patches only
    /// `spec.unschedulable`). Where the API records no manager, nk3's annotation decides.
    public var isCordonedByNK3: Bool {
        guard isUnschedulable else { return false }
        if let manager = unschedulableManager { return manager == KubeClient.fieldManager }
        return annotation(NK3Annotations.cordonedBy) != nil
    }

    /// Who holds a cordon that is not nk3's, for messages: the field manager, else "someone else".
    public var cordonHolder: String { unschedulableManager ?? "someone else" }
}

/// `spec` of a Node.
public struct NodeSpec: Codable, Sendable, Hashable {
    /// Cordoned (omitempty: nil = false).
    public var unschedulable: Bool?
    /// Taints (no patch strategy: a strategic merge patch replaces the list: k8s.io/api core/v1/types.go).
    public var taints: [Taint]?
    /// Makes a spec.
    public init(unschedulable: Bool? = nil, taints: [Taint]? = nil) {
        self.unschedulable = unschedulable
        self.taints = taints
    }
}

/// A node taint.
public struct Taint: Codable, Sendable, Hashable {
    /// Key, e.g. `node.kubernetes.io/unschedulable`.
    public var key: String
    /// Optional value.
    public var value: String?
    /// `NoSchedule`, `PreferNoSchedule`, `NoExecute`.
    public var effect: String
    /// When added.
    public var timeAdded: String?
    /// Makes a taint.
    public init(key: String, value: String? = nil, effect: String, timeAdded: String? = nil) {
        self.key = key
        self.value = value
        self.effect = effect
        self.timeAdded = timeAdded
    }
}

/// `status` of a Node.
public struct NodeStatus: Codable, Sendable, Hashable {
    /// Conditions (Ready, MemoryPressure, …).
    public var conditions: [KubeCondition]?
    /// System info.
    public var nodeInfo: NodeSystemInfo?
    /// Makes a status.
    public init(conditions: [KubeCondition]? = nil, nodeInfo: NodeSystemInfo? = nil) {
        self.conditions = conditions
        self.nodeInfo = nodeInfo
    }
}

/// `status.nodeInfo`.
public struct NodeSystemInfo: Codable, Sendable, Hashable {
    /// Boot id.
    public var bootID: String?
    /// `uname -r`.
    public var kernelVersion: String?
    /// e.g. `NixOS 25.05 (Warbler)`.
    public var osImage: String?
    /// e.g. `v1.30.4+k3s1`.
    public var kubeletVersion: String?
    /// e.g. `containerd://1.7.x`.
    public var containerRuntimeVersion: String?
    /// e.g. `linux`.
    public var operatingSystem: String?
    /// e.g. `amd64`.
    public var architecture: String?
    /// Machine id.
    public var machineID: String?
    /// Makes system info.
    public init(
        bootID: String? = nil, kernelVersion: String? = nil, osImage: String? = nil, kubeletVersion: String? = nil,
        containerRuntimeVersion: String? = nil, operatingSystem: String? = "linux", architecture: String? = "amd64",
        machineID: String? = nil
    ) {
        self.bootID = bootID
        self.kernelVersion = kernelVersion
        self.osImage = osImage
        self.kubeletVersion = kubeletVersion
        self.containerRuntimeVersion = containerRuntimeVersion
        self.operatingSystem = operatingSystem
        self.architecture = architecture
        self.machineID = machineID
    }
}
