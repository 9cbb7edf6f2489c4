import Foundation
import NK3Protocol

/// One row of `nk3 status`.
public struct NodeStatusRow: Codable, Sendable, Hashable {
    public var node: String
    public var address: String
    public var reachable: Bool
    public var error: String?
    public var kernel: String?
    /// "current/booted" generation numbers.
    public var generation: String?
    /// Rendered files equal the landed ones (nil when not known).
    public var inSync: Bool?
    public var kubelet: String?
    /// Cordoned in Kubernetes (nil when the API was not reachable).
    public var cordoned: Bool?
    /// The operation in progress ("awaiting_confirm until …") or the last result.
    public var operation: String?
    /// The NixOS/nixpkgs release the node runs (`nixos-version`, e.g. `24.05.4100.f6e5d4c3b2a1`).
    public var nixpkgs: String?
    /// How the node's agent undoes a boot apply: "trial-boot" (the boot loader's one-shot) or "dead-man".
    public var rollbackMode: String?
    /// Flake mode: the nixpkgs commit the node's flake.lock pins (12 digits), or the lock's digest
    /// (`sha256:` and 12 digits) when it pins none; nil on a channel node.
    public var flakeLock: String?

    /// Builds a row from a probe, the node's rendered files and its cordon state.
    public init(probe: ClusterSession.Probe, rendered: [String: String]?, cordoned: Bool?) {
        node = probe.node
        address = probe.address
        self.cordoned = cordoned
        switch probe.result {
        case .failure(let e):
            reachable = false
            error = e.message
        case .success(let s):
            reachable = true
            kernel = s.kernel
            nixpkgs = s.nixosVersion.map { String($0.prefix { $0 != " " }) }
            rollbackMode = s.rollbackMode
            flakeLock = s.flakeLock.map { l in l.nixpkgsRevision.map { String($0.prefix(12)) } ?? "sha256:\(l.sha256.prefix(12))" }
            generation = "\(s.currentGeneration.map(String.init) ?? "?")/\(s.bootedGeneration.map(String.init) ?? "?")"
            inSync = rendered.map { Plan.isLanded(rendered: $0, status: s) }
            let k = s.kubelet
            kubelet = k.unitActive ? (k.healthz == false ? "unhealthy" : "active") : "inactive"
            if let op = s.operation {
                operation = "\(op.kind) \(op.phase.rawValue)" + (op.deadline.map { " until \(RolloutTimestamp.format($0))" } ?? "")
            } else if let r = s.lastResult {
                operation = "last: \(r.outcome.rawValue)"
            }
        }
    }
}

/// Renders `nk3 status` as an aligned text table.
public enum StatusTable {
    public static let header = [
        "NODE", "ADDRESS", "REACHABLE", "KERNEL", "NIXPKGS", "GEN cur/boot", "ROLLBACK", "CONFIG", "KUBELET", "CORDONED",
        "OPERATION",
    ]

    /// The table, one line per node after a header.
    public static func render(_ rows: [NodeStatusRow]) -> String {
        // Flake mode adds a FLAKE LOCK column after NIXPKGS (what the node's lock pins; NIXPKGS is what it runs).
        let flakes = rows.contains { $0.flakeLock != nil }
        var header = header
        if flakes { header.insert("FLAKE LOCK", at: 5) }
        let cells: [[String]] = [header] + rows.map { r in
            var row = [
                r.node, r.address, r.reachable ? "yes" : "NO", r.kernel ?? "-", r.nixpkgs ?? "-", r.generation ?? "-",
                r.rollbackMode ?? "-", r.inSync.map { $0 ? "in sync" : "differs" } ?? "-", r.kubelet ?? "-",
                r.cordoned.map { $0 ? "yes" : "no" } ?? "?", r.operation ?? (r.error.map { "error: \($0)" } ?? "-"),
            ]
            if flakes { row.insert(r.flakeLock ?? "-", at: 5) }
            return row
        }
        var widths = [Int](repeating: 0, count: header.count)
        for row in cells { for (i, c) in row.enumerated() where i < header.count - 1 { widths[i] = max(widths[i], c.count) } }
        let table = cells.map { row in
            row.enumerated().map { i, c in i < header.count - 1 ? c.padding(toLength: widths[i], withPad: " ", startingAt: 0) : c }
                .joined(separator: "  ")
        }
        return (table + [mixedReleases(rows), mixedFlakeLocks(rows)].compactMap { $0 }).joined(separator: "\n")
    }

    /// A line naming each flake lock and its nodes when the reachable nodes hold more than one, nil otherwise.
    public static func mixedFlakeLocks(_ rows: [NodeStatusRow]) -> String? {
        var byLock: [String: [String]] = [:]
        for r in rows { if let v = r.flakeLock { byLock[v, default: []].append(r.node) } }
        guard byLock.count > 1 else { return nil }
        let parts = byLock.sorted { $0.key < $1.key }.map { "\($0.key) on \($0.value.joined(separator: ", "))" }
        return "MIXED: the nodes hold \(byLock.count) flake locks (\(parts.joined(separator: "; "))); "
            + "`nk3 upgrade` brings them to one (every node gets the lock the first node writes)"
    }

    /// A line naming each release and its nodes when the reachable nodes run more than one nixpkgs release (nodes
    /// upgraded from a channel at different times), nil otherwise.
    public static func mixedReleases(_ rows: [NodeStatusRow]) -> String? {
        var byRelease: [String: [String]] = [:]
        for r in rows { if let v = r.nixpkgs { byRelease[v, default: []].append(r.node) } }
        guard byRelease.count > 1 else { return nil }
        let parts = byRelease.sorted { $0.key < $1.key }.map { "\($0.key) on \($0.value.joined(separator: ", "))" }
        return "MIXED: the nodes run \(byRelease.count) nixpkgs releases (\(parts.joined(separator: "; "))); "
            + "`nk3 upgrade` brings them to one (it pins every node to the release the first node fetches)"
    }
}
