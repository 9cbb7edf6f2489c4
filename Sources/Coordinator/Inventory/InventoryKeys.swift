/// The inventory's top-level vocabulary.
public enum InventoryKeys {
    /// Keys the Python tool required (nk3 requires them too).
    public static let required = ["join_address", "join_token", "nix_channel", "nodes"]
    /// Keys from the Python tool that nk3 treats as optional.
    public static let pythonOptional = ["watch_namespaces"]
    /// nk3's own optional keys.
    public static let nk3 = [
        "cluster_name", "agent_port", "pki_dir", "kubeconfig", "kube_context", "disruption_budget", "ceph",
        "template", "timeouts", "servers", "order", "vars", "health_rule", "state_version",
        "rollout_log_dir", "window", "gates", "agent_binary", "flake",
    ]
    /// Top-level keys accepted as template extras without `vars:` (Python-tool templates read such keys
    /// from `cluster`). Anything else unknown is an error; put new template variables under `vars:`.
    public static let knownExtras = [
        "default_gateway", "gateway", "nameservers", "domain", "search_domains", "timezone", "time_zone",
        "ntp_servers", "ssh_authorized_keys", "ssh_keys", "locale", "http_proxy", "https_proxy", "no_proxy",
        "k3s_version", "k3s_extra_flags", "cluster_cidr", "service_cidr", "cluster_dns", "mtu", "netmask",
        "prefix_length",
    ]
    /// Keys of `timeouts:`.
    public static let timeouts = ["drain", "reboot", "ready", "gates", "confirm", "rebuild"]
    /// Keys of `ceph:`.
    public static let ceph = ["enabled", "namespace", "name"]
    /// `system.stateVersion` as written: a release such as "24.05" (two digits, a dot, two digits).
    public static func isStateVersion(_ s: String) -> Bool {
        let u = Array(s.utf8)
        guard u.count == 5, u[2] == UInt8(ascii: ".") else { return false }
        return [0, 1, 3, 4].allSatisfy { u[$0] >= UInt8(ascii: "0") && u[$0] <= UInt8(ascii: "9") }
    }

    /// Hostvars nk3 computes itself and that therefore cannot be set (`hostname` sets the name).
    public static let reservedHostvars = ["name", "ip", "address"]

    /// Every accepted top-level key.
    public static var allTopLevel: [String] { required + pythonOptional + nk3 + knownExtras }

    /// The closest candidate to a misspelt key, if one is close enough to be a plausible typo.
    public static func suggestion(for key: String, among candidates: [String]) -> String? {
        var best: (String, Int)?
        for c in candidates {
            let d = editDistance(key.lowercased(), c)
            if best == nil || d < best!.1 { best = (c, d) }
        }
        guard let (c, d) = best else { return nil }
        let limit = max(2, c.count / 3)
        return d <= limit ? c : nil
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a)
        let b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var prev = Array(0...b.count)
        var cur = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            cur[0] = i
            for j in 1...b.count {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&prev, &cur)
        }
        return prev[b.count]
    }
}
