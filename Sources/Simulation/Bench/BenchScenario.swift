/// The scenarios of `nk3 bench`, in run order.
public enum BenchScenario: String, Sendable, Hashable, CaseIterable, Codable {
    /// One Kubernetes node GET in process (kept-alive TLS) vs one `kubectl get node -o json` process.
    case probe
    /// `nk3 status` over 10, 50, 100 simulated agents with fresh mTLS connections.
    case status
    /// `nk3 plan` over 10, 100, 1,000 simulated agents: load, probe, render and diff, with and without a change.
    case plan
    /// A full apply rollout on instant simulated nodes: the coordinator's own cost per node.
    case rollout
    /// A rollout at realistic simulated durations, against its critical path.
    case critical
    /// From the fake API turning healthy to the gate wait returning.
    case gate
    /// A real `nk3-agent` process: RSS, idle CPU, stripped binary size.
    case agent
    /// Verifying a signed envelope carrying a 100 KB bundle.
    case envelope
    /// Rendering every node's bundle of a 1,000-node inventory (the Jinja2 engine).
    case render

    /// Human title.
    public var title: String {
        switch self {
        case .probe: return "health-probe cost: in-process KubeClient GET vs a kubectl process"
        case .status: return "fleet status (ClusterSession.load + probeAll, fresh mTLS per agent)"
        case .plan: return "fleet plan (ClusterSession.load + probeAll + plan: render and diff every node)"
        case .critical: return "rollout time vs critical path at realistic simulated durations"
        case .rollout: return "coordinator overhead: apply rollout on instant simulated nodes"
        case .gate: return "gate reaction latency (fake API turns healthy → waitUntilHealthy returns)"
        case .agent: return "agent footprint (real nk3-agent process)"
        case .envelope: return "envelope verify (100 KB bundle)"
        case .render: return "template rendering (BundleRenderer.renderAll, 1,000 nodes)"
        }
    }
}
