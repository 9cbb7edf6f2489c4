import Foundation

/// A `coordination.k8s.io/v1` Lease (docs/UPSTREAM.md#lease).
public struct Lease: Codable, Sendable, Hashable {
    /// `coordination.k8s.io/v1`.
    public var apiVersion: String? = "coordination.k8s.io/v1"
    /// `Lease`.
    public var kind: String? = "Lease"
    /// Metadata; `resourceVersion` is required for an update.
    public var metadata: ObjectMeta
    /// Spec.
    public var spec: LeaseSpec
    /// Makes a lease.
    public init(metadata: ObjectMeta, spec: LeaseSpec = LeaseSpec()) {
        self.metadata = metadata
        self.spec = spec
    }
    enum CodingKeys: String, CodingKey { case apiVersion, kind, metadata, spec }
    /// Decodes (a missing spec is empty).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        apiVersion = try c.decodeIfPresent(String.self, forKey: .apiVersion)
        kind = try c.decodeIfPresent(String.self, forKey: .kind)
        metadata = try c.decode(ObjectMeta.self, forKey: .metadata)
        spec = try c.decodeIfPresent(LeaseSpec.self, forKey: .spec) ?? LeaseSpec()
    }
}

/// `spec` of a Lease. Times are `MicroTime` strings (6 fraction digits, `Z`).
public struct LeaseSpec: Codable, Sendable, Hashable {
    /// Holder.
    public var holderIdentity: String?
    /// Duration.
    public var leaseDurationSeconds: Int?
    /// When acquired.
    public var acquireTime: String?
    /// Last renewal.
    public var renewTime: String?
    /// Holder changes.
    public var leaseTransitions: Int?
    /// Makes a spec.
    public init(
        holderIdentity: String? = nil, leaseDurationSeconds: Int? = nil, acquireTime: String? = nil,
        renewTime: String? = nil, leaseTransitions: Int? = nil
    ) {
        self.holderIdentity = holderIdentity
        self.leaseDurationSeconds = leaseDurationSeconds
        self.acquireTime = acquireTime
        self.renewTime = renewTime
        self.leaseTransitions = leaseTransitions
    }
}
