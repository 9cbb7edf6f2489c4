import Foundation

/// The inventory's keys for operating a long rollout: where event logs go, the maintenance window, the alert gate.
public struct OperateSettings: Sendable, Hashable {
    /// `rollout_log_dir` (resolved against the inventory's directory); default `<inventory dir>/.nk3/rollouts`.
    public var rolloutLogDirectory: String
    /// `window:`; nil means nodes may start at any time.
    public var window: MaintenanceWindow?
    /// `gates.prometheus:`; nil means no alert gate.
    public var prometheus: PrometheusGateSettings?

    /// Settings with logs in `rolloutLogDirectory`, no window and no alert gate.
    public init(rolloutLogDirectory: String = RolloutLog.defaultDirectory(inventoryDirectory: ""),
                window: MaintenanceWindow? = nil, prometheus: PrometheusGateSettings? = nil) {
        self.rolloutLogDirectory = rolloutLogDirectory
        self.window = window
        self.prometheus = prometheus
    }
}

/// `gates.prometheus: {url, alert_filter, ca}`: no node starts while an alert whose name matches `alert_filter`
/// is firing (Prometheus HTTP API `GET /api/v1/alerts`,
/// https://prometheus.io/docs/prometheus/latest/querying/api/#alerts).
public struct PrometheusGateSettings: Sendable, Hashable {
    /// Base URL of the Prometheus server (`http://…:9090` or `https://…`).
    public var url: String
    /// A regular expression matched against the whole alert name (anchored, as Prometheus anchors `=~`);
    /// default `.*` (every firing alert blocks). Unlike kured's `--alert-filter-regexp`, which names alerts to
    /// *ignore*, this names the alerts that block.
    public var alertFilter: String
    /// A PEM CA bundle to verify an `https` Prometheus with (default: the system's roots).
    public var caFile: String?

    /// Settings for the server at `url`.
    public init(url: String, alertFilter: String = ".*", caFile: String? = nil) {
        self.url = url
        self.alertFilter = alertFilter
        self.caFile = caFile
    }
}
