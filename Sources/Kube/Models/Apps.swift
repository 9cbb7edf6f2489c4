import Foundation

/// An `apps/v1` DaemonSet (docs/UPSTREAM.md#rollout-status).
public struct DaemonSet: Codable, Sendable, Hashable {
    /// `apps/v1`.
    public var apiVersion: String? = "apps/v1"
    /// `DaemonSet`.
    public var kind: String? = "DaemonSet"
    /// Metadata (generation matters).
    public var metadata: ObjectMeta
    /// Spec, kept as raw JSON.
    public var spec: JSONValue?
    /// Status.
    public var status: DaemonSetStatus?
    /// Makes a DaemonSet.
    public init(metadata: ObjectMeta, spec: JSONValue? = nil, status: DaemonSetStatus? = DaemonSetStatus()) {
        self.metadata = metadata
        self.spec = spec
        self.status = status
    }
    /// Name ("" if missing).
    public var name: String { metadata.name ?? "" }
}

/// `status` of a DaemonSet. The first four counters are always present; the others are `omitempty`,
/// so absent means 0 (k8s.io/api apps/v1/types.go).
public struct DaemonSetStatus: Codable, Sendable, Hashable {
    /// Nodes running at least one daemon pod that should.
    public var currentNumberScheduled: Int
    /// Nodes running a daemon pod that should not.
    public var numberMisscheduled: Int
    /// Nodes that should run the daemon pod.
    public var desiredNumberScheduled: Int
    /// Nodes with a ready daemon pod.
    public var numberReady: Int
    /// Latest generation observed by the controller (0 if absent).
    public var observedGeneration: Int
    /// Nodes running the updated pod.
    public var updatedNumberScheduled: Int
    /// Nodes with an available daemon pod.
    public var numberAvailable: Int
    /// Nodes without an available daemon pod.
    public var numberUnavailable: Int

    /// Makes a status.
    public init(
        currentNumberScheduled: Int = 0, numberMisscheduled: Int = 0, desiredNumberScheduled: Int = 0,
        numberReady: Int = 0, observedGeneration: Int = 0, updatedNumberScheduled: Int = 0, numberAvailable: Int = 0,
        numberUnavailable: Int = 0
    ) {
        self.currentNumberScheduled = currentNumberScheduled
        self.numberMisscheduled = numberMisscheduled
        self.desiredNumberScheduled = desiredNumberScheduled
        self.numberReady = numberReady
        self.observedGeneration = observedGeneration
        self.updatedNumberScheduled = updatedNumberScheduled
        self.numberAvailable = numberAvailable
        self.numberUnavailable = numberUnavailable
    }

    enum CodingKeys: String, CodingKey {
        case currentNumberScheduled, numberMisscheduled, desiredNumberScheduled, numberReady, observedGeneration,
            updatedNumberScheduled, numberAvailable, numberUnavailable
    }

    /// Decodes, reading absent counters as 0.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func v(_ k: CodingKeys) throws -> Int { try c.decodeIfPresent(Int.self, forKey: k) ?? 0 }
        currentNumberScheduled = try v(.currentNumberScheduled)
        numberMisscheduled = try v(.numberMisscheduled)
        desiredNumberScheduled = try v(.desiredNumberScheduled)
        numberReady = try v(.numberReady)
        observedGeneration = try v(.observedGeneration)
        updatedNumberScheduled = try v(.updatedNumberScheduled)
        numberAvailable = try v(.numberAvailable)
        numberUnavailable = try v(.numberUnavailable)
    }

    /// Encodes as the API does: the four required counters always, the `omitempty` ones only when non-zero.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(currentNumberScheduled, forKey: .currentNumberScheduled)
        try c.encode(numberMisscheduled, forKey: .numberMisscheduled)
        try c.encode(desiredNumberScheduled, forKey: .desiredNumberScheduled)
        try c.encode(numberReady, forKey: .numberReady)
        if observedGeneration != 0 { try c.encode(observedGeneration, forKey: .observedGeneration) }
        if updatedNumberScheduled != 0 { try c.encode(updatedNumberScheduled, forKey: .updatedNumberScheduled) }
        if numberAvailable != 0 { try c.encode(numberAvailable, forKey: .numberAvailable) }
        if numberUnavailable != 0 { try c.encode(numberUnavailable, forKey: .numberUnavailable) }
    }
}

/// An `apps/v1` Deployment (docs/UPSTREAM.md#rollout-status).
public struct Deployment: Codable, Sendable, Hashable {
    /// `apps/v1`.
    public var apiVersion: String? = "apps/v1"
    /// `Deployment`.
    public var kind: String? = "Deployment"
    /// Metadata.
    public var metadata: ObjectMeta
    /// Spec (replicas only).
    public var spec: DeploymentSpec?
    /// Status.
    public var status: DeploymentStatus?
    /// Makes a Deployment.
    public init(metadata: ObjectMeta, spec: DeploymentSpec? = nil, status: DeploymentStatus? = DeploymentStatus()) {
        self.metadata = metadata
        self.spec = spec
        self.status = status
    }
    /// Name ("" if missing).
    public var name: String { metadata.name ?? "" }
    /// The `Available` condition.
    public var availableCondition: KubeCondition? { status?.conditions?.first { $0.type == "Available" } }
}

/// `spec` of a Deployment.
public struct DeploymentSpec: Codable, Sendable, Hashable {
    /// Desired replicas.
    public var replicas: Int?
    /// Label selector.
    public var selector: LabelSelector?
    /// Makes a spec.
    public init(replicas: Int? = nil, selector: LabelSelector? = nil) {
        self.replicas = replicas
        self.selector = selector
    }
}

/// `status` of a Deployment (every field `omitempty`, k8s.io/api apps/v1/types.go).
public struct DeploymentStatus: Codable, Sendable, Hashable {
    /// Observed generation.
    public var observedGeneration: Int?
    /// Total replicas.
    public var replicas: Int?
    /// Updated replicas.
    public var updatedReplicas: Int?
    /// Ready replicas.
    public var readyReplicas: Int?
    /// Available replicas.
    public var availableReplicas: Int?
    /// Unavailable replicas.
    public var unavailableReplicas: Int?
    /// Conditions (Available, Progressing).
    public var conditions: [KubeCondition]?
    /// Makes a status.
    public init(
        observedGeneration: Int? = nil, replicas: Int? = nil, updatedReplicas: Int? = nil, readyReplicas: Int? = nil,
        availableReplicas: Int? = nil, unavailableReplicas: Int? = nil, conditions: [KubeCondition]? = nil
    ) {
        self.observedGeneration = observedGeneration
        self.replicas = replicas
        self.updatedReplicas = updatedReplicas
        self.readyReplicas = readyReplicas
        self.availableReplicas = availableReplicas
        self.unavailableReplicas = unavailableReplicas
        self.conditions = conditions
    }
}

/// A label selector (`matchLabels`, `matchExpressions`).
public struct LabelSelector: Codable, Sendable, Hashable {
    /// Exact matches.
    public var matchLabels: [String: String]?
    /// Set-based requirements.
    public var matchExpressions: [LabelSelectorRequirement]?
    /// Makes a selector.
    public init(matchLabels: [String: String]? = nil, matchExpressions: [LabelSelectorRequirement]? = nil) {
        self.matchLabels = matchLabels
        self.matchExpressions = matchExpressions
    }

    /// Whether `labels` satisfy the selector. An empty selector matches everything (the newer eviction
    /// code, docs/UPSTREAM.md#eviction).
    public func matches(_ labels: [String: String]) -> Bool {
        for (k, v) in matchLabels ?? [:] where labels[k] != v { return false }
        for e in matchExpressions ?? [] {
            let value = labels[e.key]
            switch e.operator {
            case "In": if value == nil || !(e.values ?? []).contains(value!) { return false }
            case "NotIn": if let value, (e.values ?? []).contains(value) { return false }
            case "Exists": if value == nil { return false }
            case "DoesNotExist": if value != nil { return false }
            default: return false
            }
        }
        return true
    }
}

/// One `matchExpressions` entry.
public struct LabelSelectorRequirement: Codable, Sendable, Hashable {
    /// Label key.
    public var key: String
    /// In, NotIn, Exists, DoesNotExist.
    public var `operator`: String
    /// Values for In/NotIn.
    public var values: [String]?
    /// Makes a requirement.
    public init(key: String, operator: String, values: [String]? = nil) {
        self.key = key
        self.operator = `operator`
        self.values = values
    }
}
