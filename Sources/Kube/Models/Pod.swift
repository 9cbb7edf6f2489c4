import Foundation

/// A `v1` Pod: owners, node, volumes and phase — what drain needs (docs/UPSTREAM.md#drain).
public struct Pod: Codable, Sendable, Hashable {
    /// `v1`.
    public var apiVersion: String? = "v1"
    /// `Pod`.
    public var kind: String? = "Pod"
    /// Metadata (name, namespace, uid, labels, annotations, ownerReferences).
    public var metadata: ObjectMeta
    /// Spec.
    public var spec: PodSpec?
    /// Status.
    public var status: PodStatus?

    /// Makes a pod.
    public init(metadata: ObjectMeta, spec: PodSpec? = nil, status: PodStatus? = nil) {
        self.metadata = metadata
        self.spec = spec
        self.status = status
    }

    /// The annotation marking a static (mirror) pod (k8s.io/api core/v1/annotation_key_constants.go).
    public static let mirrorAnnotation = "kubernetes.io/config.mirror"

    /// Name ("" if missing).
    public var name: String { metadata.name ?? "" }
    /// Namespace (`default` if missing).
    public var namespace: String { metadata.namespace ?? "default" }
    /// `namespace/name`.
    public var qualifiedName: String { "\(namespace)/\(name)" }
    /// Owned by a DaemonSet through its controller reference.
    public var isDaemonSetPod: Bool { metadata.controller?.kind == "DaemonSet" }
    /// A mirror pod (static pod shown by the kubelet).
    public var isMirrorPod: Bool { metadata.annotations?[Pod.mirrorAnnotation] != nil }
    /// Uses an emptyDir volume.
    public var hasEmptyDir: Bool { spec?.volumes?.contains { $0.emptyDir != nil } ?? false }
    /// Phase Succeeded or Failed.
    public var isTerminal: Bool { status?.phase == "Succeeded" || status?.phase == "Failed" }
    /// Ready condition True.
    public var isReady: Bool { status?.conditions?.first { $0.type == "Ready" }?.isTrue ?? false }
}

/// `spec` of a Pod.
public struct PodSpec: Codable, Sendable, Hashable {
    /// The node it is bound to.
    public var nodeName: String?
    /// Volumes (only the emptyDir marker matters here).
    public var volumes: [Volume]?
    /// Containers, kept as raw JSON.
    public var containers: [JSONValue]?
    /// Makes a spec.
    public init(nodeName: String? = nil, volumes: [Volume]? = nil, containers: [JSONValue]? = nil) {
        self.nodeName = nodeName
        self.volumes = volumes
        self.containers = containers
    }
}

/// A pod volume.
public struct Volume: Codable, Sendable, Hashable {
    /// Volume name.
    public var name: String
    /// Present for emptyDir volumes (`{}` or with medium/sizeLimit).
    public var emptyDir: JSONValue?
    /// Makes a volume.
    public init(name: String, emptyDir: JSONValue? = nil) {
        self.name = name
        self.emptyDir = emptyDir
    }
}

/// `status` of a Pod.
public struct PodStatus: Codable, Sendable, Hashable {
    /// Pending, Running, Succeeded, Failed, Unknown.
    public var phase: String?
    /// Conditions (Ready, …).
    public var conditions: [KubeCondition]?
    /// Makes a status.
    public init(phase: String? = nil, conditions: [KubeCondition]? = nil) {
        self.phase = phase
        self.conditions = conditions
    }
}

/// A `policy/v1` Eviction request body (docs/UPSTREAM.md#eviction).
public struct Eviction: Codable, Sendable, Hashable {
    /// `policy/v1`.
    public var apiVersion: String = "policy/v1"
    /// `Eviction`.
    public var kind: String = "Eviction"
    /// Must name the pod of the URL.
    public var metadata: ObjectMeta
    /// Optional delete options.
    public var deleteOptions: DeleteOptions?
    /// Makes an eviction.
    public init(namespace: String, name: String, gracePeriodSeconds: Int? = nil) {
        metadata = ObjectMeta(name: name, namespace: namespace)
        deleteOptions = gracePeriodSeconds.map { DeleteOptions(gracePeriodSeconds: $0) }
    }
}

/// Delete options of an eviction.
public struct DeleteOptions: Codable, Sendable, Hashable {
    /// Grace period; omitted means the pod's own.
    public var gracePeriodSeconds: Int?
    /// `["All"]` for a dry run (kubectl `drain --dry-run=server` sends it here, kubernetes/kubectl pkg/drain/drain.go
    /// `makeDeleteOptions`); nk3 sends the `dryRun` query parameter instead.
    public var dryRun: [String]?
    /// Makes options.
    public init(gracePeriodSeconds: Int? = nil, dryRun: [String]? = nil) {
        self.gracePeriodSeconds = gracePeriodSeconds
        self.dryRun = dryRun
    }
}
