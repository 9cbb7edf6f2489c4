import Foundation

/// A `policy/v1` PodDisruptionBudget (docs/UPSTREAM.md#poddisruptionbudget).
public struct PodDisruptionBudget: Codable, Sendable, Hashable {
    /// `policy/v1`.
    public var apiVersion: String? = "policy/v1"
    /// `PodDisruptionBudget`.
    public var kind: String? = "PodDisruptionBudget"
    /// Metadata.
    public var metadata: ObjectMeta
    /// Spec.
    public var spec: PodDisruptionBudgetSpec?
    /// Status.
    public var status: PodDisruptionBudgetStatus?
    /// Makes a PDB.
    public init(metadata: ObjectMeta, spec: PodDisruptionBudgetSpec?, status: PodDisruptionBudgetStatus? = nil) {
        self.metadata = metadata
        self.spec = spec
        self.status = status
    }
    /// Name ("" if missing).
    public var name: String { metadata.name ?? "" }
}

/// An int or a percentage string (`minAvailable: 2` or `"50%"`).
public enum IntOrString: Codable, Sendable, Hashable {
    /// An absolute count.
    case int(Int)
    /// A string, normally `"N%"`.
    case string(String)

    /// Decodes either form.
    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let i = try? c.decode(Int.self) { self = .int(i) } else { self = .string(try c.decode(String.self)) }
    }
    /// Encodes either form.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .int(let i): try c.encode(i)
        case .string(let s): try c.encode(s)
        }
    }
    /// The absolute value against `total` (percentages round up, as the disruption controller does for
    /// minAvailable).
    public func resolve(total: Int, roundUp: Bool = true) -> Int {
        switch self {
        case .int(let i): return i
        case .string(let s):
            let digits = s.hasSuffix("%") ? String(s.dropLast()) : s
            let pct = Double(Int(digits) ?? 0)
            let v = Double(total) * pct / 100
            return Int(roundUp ? v.rounded(.up) : v.rounded(.down))
        }
    }
}

/// `spec` of a PDB.
public struct PodDisruptionBudgetSpec: Codable, Sendable, Hashable {
    /// Minimum available pods.
    public var minAvailable: IntOrString?
    /// Maximum unavailable pods.
    public var maxUnavailable: IntOrString?
    /// Pods it covers.
    public var selector: LabelSelector?
    /// `IfHealthyBudget` (default) or `AlwaysAllow`.
    public var unhealthyPodEvictionPolicy: String?
    /// Makes a spec.
    public init(
        minAvailable: IntOrString? = nil, maxUnavailable: IntOrString? = nil, selector: LabelSelector? = nil,
        unhealthyPodEvictionPolicy: String? = nil
    ) {
        self.minAvailable = minAvailable
        self.maxUnavailable = maxUnavailable
        self.selector = selector
        self.unhealthyPodEvictionPolicy = unhealthyPodEvictionPolicy
    }
}

/// `status` of a PDB; the four counters are always present (k8s.io/api policy/v1/types.go).
public struct PodDisruptionBudgetStatus: Codable, Sendable, Hashable {
    /// Observed generation.
    public var observedGeneration: Int?
    /// Pods evicted but not yet gone (name → time).
    public var disruptedPods: [String: String]?
    /// Evictions allowed now.
    public var disruptionsAllowed: Int
    /// Healthy pods now.
    public var currentHealthy: Int
    /// Healthy pods required.
    public var desiredHealthy: Int
    /// Pods counted.
    public var expectedPods: Int
    /// Conditions (`DisruptionAllowed`).
    public var conditions: [KubeCondition]?
    /// Makes a status.
    public init(
        observedGeneration: Int? = nil, disruptedPods: [String: String]? = nil, disruptionsAllowed: Int = 0,
        currentHealthy: Int = 0, desiredHealthy: Int = 0, expectedPods: Int = 0, conditions: [KubeCondition]? = nil
    ) {
        self.observedGeneration = observedGeneration
        self.disruptedPods = disruptedPods
        self.disruptionsAllowed = disruptionsAllowed
        self.currentHealthy = currentHealthy
        self.desiredHealthy = desiredHealthy
        self.expectedPods = expectedPods
        self.conditions = conditions
    }
}
