import Foundation
import NK3Kube
import Synchronization

/// Rook's toolbox: the `rook-ceph-tools` Deployment, whose pods (labelled `app=rook-ceph-tools`) run in the
/// CephCluster's namespace with the ceph CLI and the cluster's admin keyring (rook deploy/examples/toolbox.yaml).
/// Running `ceph status -f json` there — as the Python tool did — asks Ceph itself, so the answer is as fresh as
/// the moment it comes back, without waiting for Rook's next CephCluster status refresh (about every 60 s).
public enum CephToolbox {
    /// The toolbox pods' label (rook deploy/examples/toolbox.yaml: `metadata.labels.app: rook-ceph-tools`).
    public static let labelSelector = "app=rook-ceph-tools"
    /// What is run.
    public static let command = ["ceph", "status", "-f", "json"]

    /// The toolbox pod to exec into: a Running and Ready one (the first by name), or nil.
    public static func pod(_ kube: any KubeAPI, namespace: String) async throws -> Pod? {
        try await kube.listPods(namespace: namespace, labelSelector: labelSelector)
            .filter { $0.status?.phase == "Running" && $0.isReady && $0.metadata.deletionTimestamp == nil }
            .sorted { $0.name < $1.name }
            .first
    }

    /// `ceph status -f json` in `pod`: the decoded report. A non-zero exit or an unreadable answer throws.
    public static func status(_ kube: any KubeAPI, pod: Pod, timeout: Duration = .seconds(20)) async throws -> CephStatusReport {
        let r = try await kube.exec(
            namespace: pod.namespace, pod: pod.name, container: nil, command: command, timeout: timeout,
            maxOutputBytes: 4 << 20)
        guard r.exitCode == 0 else {
            let err = String(decoding: r.stderr.prefix(300), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw KubeError(.server, "`\(command.joined(separator: " "))` in \(pod.qualifiedName) exited with \(r.exitCode)\(err.isEmpty ? "" : ": \(err)")")
        }
        do {
            return try JSONDecoder().decode(CephStatusReport.self, from: r.stdout)
        } catch {
            throw KubeError(.decode, "`\(command.joined(separator: " "))` in \(pod.qualifiedName) printed no ceph status JSON: \(error)")
        }
    }
}

/// One Ceph gate's toolbox lookups: the pod found (kept until an exec says it is gone), a lookup that found none
/// repeated at most every `relook`, and whether the exec path failed for good.
final class CephToolboxLookup: Sendable {
    private struct State {
        var broken: Bool
        var pod: Pod? = nil
        var lookedAt: ContinuousClock.Instant? = nil
    }
    private let state: Mutex<State>
    private let relook: Duration

    init(enabled: Bool, relook: Duration = .seconds(10)) {
        state = Mutex(State(broken: !enabled))
        self.relook = relook
    }

    /// Whether the toolbox may still be asked.
    var usable: Bool { state.withLock { !$0.broken } }

    /// The known pod, else the result of `find` if no lookup ran within `relook`, else nil.
    func pod(_ find: () async throws -> Pod?) async throws -> Pod? {
        let now = ContinuousClock.now
        let (known, due) = state.withLock { s in (s.pod, s.lookedAt.map { $0.duration(to: now) >= relook } ?? true) }
        if let known { return known }
        guard due else { return nil }
        let found = try await find()
        state.withLock {
            $0.pod = found
            $0.lookedAt = now
        }
        return found
    }

    /// The pod is gone: look again on the next check.
    func forget() {
        state.withLock {
            $0.pod = nil
            $0.lookedAt = nil
        }
    }

    /// The exec path failed for good.
    func markBroken() { state.withLock { $0.broken = true } }
}
