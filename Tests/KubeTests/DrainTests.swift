import Foundation
import NK3Kube
import NK3TestSupport
import Testing

/// Drain through the Eviction API (docs/UPSTREAM.md#drain, #eviction, #poddisruptionbudget) against the fake API server
/// over TLS.
@Suite("drain")
struct DrainTests {
    let fast = DrainOptions(
        timeout: .seconds(30), initialBackoff: .milliseconds(5), maxBackoff: .milliseconds(20), pollInterval: .milliseconds(5))

    @Test("DaemonSet and mirror pods are skipped, emptyDir pods evicted, the rest evicted and gone")
    func skipsAndEvicts() async throws {
        try await withFakeKube { server, client in
            let s = server.state
            s.addNode("n1")
            s.addPod(name: "web-1", node: "n1", labels: ["app": "web"])
            s.addPod(name: "cache-1", node: "n1", emptyDir: true)
            s.addPod(namespace: "kube-system", name: "svclb-x", node: "n1", owner: ("DaemonSet", "svclb"))
            s.addPod(namespace: "kube-system", name: "etcd-n1", node: "n1", owner: ("Node", "n1"), mirror: true)
            s.addPod(name: "other", node: "n2")
            let report = try await client.drain(node: "n1", options: fast, clock: ContinuousClock(), logger: quietLogger)
            #expect(report.evicted == ["default/cache-1", "default/web-1"])
            #expect(report.skippedDaemonSet == ["kube-system/svclb-x"])
            #expect(report.skippedMirror == ["kube-system/etcd-n1"])
            #expect(report.emptyDirDeleted == ["default/cache-1"])
            #expect(s.pods(onNode: "n1").map(\.name).sorted() == ["etcd-n1", "svclb-x"])
            #expect(s.pod(name: "other") != nil)
            #expect(s.stats.evictions == 2)
        }
    }

    @Test("a pod with no controller stops the drain before anything is evicted (docs/UPSTREAM.md#drain)")
    func unreplicatedRefused() async throws {
        try await withFakeKube { server, client in
            server.state.addPod(name: "web-1", node: "n1")
            server.state.addPod(name: "bare", node: "n1", owner: nil)
            let error = await #expect(throws: KubeError.self) {
                try await client.drain(node: "n1", options: fast, clock: ContinuousClock(), logger: quietLogger)
            }
            #expect(error?.code == .refused)
            #expect(error?.message.contains("default/bare") == true)
            #expect(server.state.stats.evictions == 0)
        }
    }

    @Test("a PDB 429 is waited out: the drain succeeds once another replica is healthy")
    func waitsOutBudget() async throws {
        try await withFakeKube { server, client in
            let s = server.state
            s.addPod(name: "web-1", node: "n1", labels: ["app": "web"])
            s.addPod(name: "web-2", node: "n2", labels: ["app": "web"])
            s.addPodDisruptionBudget(name: "web-pdb", matchLabels: ["app": "web"], minAvailable: .int(2))
            #expect(s.podDisruptionBudget(name: "web-pdb")?.status?.disruptionsAllowed == 0)
            let drain = Task {
                try await client.drain(node: "n1", options: fast, clock: ContinuousClock(), logger: quietLogger)
            }
            // Once the API has refused at least once, a third replica becomes Ready elsewhere.
            #expect(try await eventually { s.stats.evictionRefusals >= 1 })
            s.addPod(name: "web-3", node: "n3", labels: ["app": "web"])
            let report = try await drain.value
            #expect(report.evicted == ["default/web-1"])
            #expect(report.budgetRefusals >= 1)
            #expect(s.pod(name: "web-1") == nil)
            #expect(s.podDisruptionBudget(name: "web-pdb")?.status?.currentHealthy == 2)
        }
    }

    @Test("a PDB that never allows the eviction times the drain out, naming the budget")
    func timeoutNamesBudget() async throws {
        try await withFakeKube { server, client in
            let s = server.state
            s.addPod(name: "web-1", node: "n1", labels: ["app": "web"])
            s.addPod(name: "web-2", node: "n2", labels: ["app": "web"])
            s.addPodDisruptionBudget(name: "web-pdb", matchLabels: ["app": "web"], maxUnavailable: .int(0))
            var options = fast
            options.timeout = .milliseconds(300)
            let error = await #expect(throws: KubeError.self) {
                try await client.drain(node: "n1", options: options, clock: ContinuousClock(), logger: quietLogger)
            }
            #expect(error?.code == .timeout)
            #expect(error?.blockingPodDisruptionBudget == "default/web-pdb")
            #expect(error?.message.contains("PodDisruptionBudget default/web-pdb") == true)
            #expect(error?.message.contains("needs 2 healthy pods and has 2 currently") == true)
            #expect(s.pod(name: "web-1") != nil)
            #expect(s.stats.evictionRefusals >= 2)
        }
    }

    @Test("the eviction 429 carries the API's Status: reason TooManyRequests and the DisruptionBudget cause")
    func rawEviction429() async throws {
        try await withFakeKube { server, client in
            server.state.addPod(name: "web-1", node: "n1", labels: ["app": "web"])
            server.state.addPodDisruptionBudget(name: "web-pdb", matchLabels: ["app": "web"], minAvailable: .string("100%"))
            let error = await #expect(throws: KubeError.self) {
                try await client.evictPod(namespace: "default", name: "web-1", gracePeriodSeconds: nil)
            }
            #expect(error?.code == .tooManyRequests)
            #expect(error?.status?.reason == "TooManyRequests")
            #expect(error?.status?.message == "Cannot evict pod as it would violate the pod's disruption budget.")
            #expect(error?.status?.details?.causes?.first?.reason == "DisruptionBudget")
            #expect(DrainPlanner.budgetName(in: error!) == "web-pdb")
            let gone = await #expect(throws: KubeError.self) {
                try await client.evictPod(namespace: "default", name: "nope", gracePeriodSeconds: 0)
            }
            #expect(gone?.code == .notFound)
        }
    }

    @Test("evicted pods that take a while to terminate are waited for")
    func waitsForTermination() async throws {
        try await withFakeKube { server, client in
            server.state.setPodTerminationDelay(.milliseconds(150))
            server.state.addPod(name: "web-1", node: "n1")
            let report = try await client.drain(node: "n1", options: fast, clock: ContinuousClock(), logger: quietLogger)
            #expect(report.evicted == ["default/web-1"])
            #expect(server.state.pod(name: "web-1") == nil)
        }
    }
}
