import Foundation
import NK3Kube

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
