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

/// What `ceph status -f json` prints (only the parts nk3 reads or the simulation writes): Ceph's own view, fresh at
/// the moment it answers — unlike a CephCluster's `status.ceph`, which Rook copies from the same command once per
/// check interval (rook pkg/operator/ceph/cluster/cephstatus.go; the field names are Ceph's, src/mon/Monitor.cc
/// `get_cluster_status` and src/mon/health_check.h `health_check_map_t::dump`).
public struct CephStatusReport: Codable, Sendable, Hashable {
    /// Cluster fsid.
    public var fsid: String?
    /// `health`: overall status and one entry per active check.
    public var health: Health
    /// `pgmap`: placement-group summary.
    public var pgmap: PGMap?

    /// `health`.
    public struct Health: Codable, Sendable, Hashable {
        /// HEALTH_OK, HEALTH_WARN or HEALTH_ERR.
        public var status: String
        /// Active checks by code (`OSD_DOWN`, `PG_DEGRADED`, …).
        public var checks: [String: Check]?
        /// Makes health.
        public init(status: String, checks: [String: Check]? = nil) {
            self.status = status
            self.checks = checks
        }
    }

    /// One health check.
    public struct Check: Codable, Sendable, Hashable {
        /// HEALTH_WARN or HEALTH_ERR.
        public var severity: String
        /// `{message, count}`.
        public var summary: Summary
        /// Whether an operator muted it.
        public var muted: Bool?
        /// Makes a check.
        public init(severity: String, message: String, count: Int, muted: Bool = false) {
            self.severity = severity
            self.summary = Summary(message: message, count: count)
            self.muted = muted
        }
    }

    /// A check's summary.
    public struct Summary: Codable, Sendable, Hashable {
        /// Human message ("1 osds down").
        public var message: String
        /// How many things it counts.
        public var count: Int?
    }

    /// `pgmap`.
    public struct PGMap: Codable, Sendable, Hashable {
        /// `[{state_name, count}]`.
        public var pgs_by_state: [PGState]?
        /// Placement groups.
        public var num_pgs: Int?
        /// Pools.
        public var num_pools: Int?
        /// Objects.
        public var num_objects: Int?
        /// Makes a pgmap.
        public init(pgs_by_state: [PGState]? = nil, num_pgs: Int? = nil, num_pools: Int? = nil, num_objects: Int? = nil) {
            self.pgs_by_state = pgs_by_state
            self.num_pgs = num_pgs
            self.num_pools = num_pools
            self.num_objects = num_objects
        }
    }

    /// PGs in one state.
    public struct PGState: Codable, Sendable, Hashable {
        /// e.g. `active+clean`, `active+undersized+degraded`.
        public var state_name: String
        /// How many.
        public var count: Int
        /// Makes one.
        public init(state_name: String, count: Int) {
            self.state_name = state_name
            self.count = count
        }
    }

    /// Makes a report.
    public init(fsid: String? = nil, health: Health, pgmap: PGMap? = nil) {
        self.fsid = fsid
        self.health = health
        self.pgmap = pgmap
    }
}
