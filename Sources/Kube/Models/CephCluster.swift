import Foundation

/// A Rook `ceph.rook.io/v1` CephCluster: only its health status is modelled (docs/UPSTREAM.md#rook-cephcluster).
public struct CephCluster: Codable, Sendable, Hashable {
    /// `ceph.rook.io/v1`.
    public var apiVersion: String? = "ceph.rook.io/v1"
    /// `CephCluster`.
    public var kind: String? = "CephCluster"
    /// Metadata.
    public var metadata: ObjectMeta
    /// Spec, kept as raw JSON.
    public var spec: JSONValue?
    /// Status.
    public var status: CephClusterStatus?
    /// Makes a CephCluster.
    public init(metadata: ObjectMeta, spec: JSONValue? = nil, status: CephClusterStatus? = nil) {
        self.metadata = metadata
        self.spec = spec
        self.status = status
    }
}

/// `status` of a CephCluster.
public struct CephClusterStatus: Codable, Sendable, Hashable {
    /// e.g. `Ready`.
    public var phase: String?
    /// e.g. `Created`.
    public var state: String?
    /// Message.
    public var message: String?
    /// Ceph's own health.
    public var ceph: CephStatus?
    /// Makes a status.
    public init(phase: String? = nil, state: String? = nil, message: String? = nil, ceph: CephStatus? = nil) {
        self.phase = phase
        self.state = state
        self.message = message
        self.ceph = ceph
    }
}

/// `status.ceph`: refreshed by the operator about every 60 s (rook pkg/operator/ceph/cluster/cephstatus.go).
public struct CephStatus: Codable, Sendable, Hashable {
    /// HEALTH_OK, HEALTH_WARN or HEALTH_ERR.
    public var health: String?
    /// Health before the last change.
    public var previousHealth: String?
    /// RFC 3339 (whole seconds, `Z`) time of the last check.
    public var lastChecked: String?
    /// Time of the last health change.
    public var lastChanged: String?
    /// One entry per Ceph health-check code.
    public var details: [String: CephHealthMessage]?
    /// Cluster fsid.
    public var fsid: String?
    /// Makes a Ceph status.
    public init(
        health: String? = nil, previousHealth: String? = nil, lastChecked: String? = nil, lastChanged: String? = nil,
        details: [String: CephHealthMessage]? = nil, fsid: String? = nil
    ) {
        self.health = health
        self.previousHealth = previousHealth
        self.lastChecked = lastChecked
        self.lastChanged = lastChanged
        self.details = details
        self.fsid = fsid
    }
}

/// One Ceph health check.
public struct CephHealthMessage: Codable, Sendable, Hashable {
    /// HEALTH_WARN, HEALTH_ERR (or `Urgent` when `ceph status` itself failed).
    public var severity: String
    /// Message.
    public var message: String
    /// Makes a message.
    public init(severity: String, message: String) {
        self.severity = severity
        self.message = message
    }
}
