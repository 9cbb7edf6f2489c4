import Foundation
import Synchronization
import NK3Kube
import NK3Simulation
import Testing

/// Drain through the Eviction API (docs/UPSTREAM.md#drain, #eviction, #poddisruptionbudget) against the fake API server
/// over TLS.
@Suite("drain")
struct DrainTests {
    let fast = DrainOptions(timeout: .seconds(30), evictRetryDelay: .milliseconds(5), pollInterval: .milliseconds(5))

    @Test("DaemonSet and mirror pods are skipped, emptyDir pods evicted, the rest evicted and gone")
    func skipsAndEvicts() async throws {
        try await withFakeKube { server, client in
            let s = server.state
            s.addNode("n1")
            s.addPod(name: "web-1", node: "n1", labels: ["app": "web"])
            s.addPod(name: "cache-1", node: "n1", emptyDir: true)
            s.addPod(namespace: "kube-system", name: "svclb-x", node: "n1", owner: ("DaemonSet", "svclb"))
            s.setDaemonSet(namespace: "kube-system", name: "svclb", desired: 1, available: 1)
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
            #expect(error?.code == .drainRefused)
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

    @Test("a PDB that can never allow the eviction refuses the drain at once, naming the budget (not a timeout)")
    func refusedByBudget() async throws {
        try await withFakeKube { server, client in
            let s = server.state
            s.addPod(name: "web-1", node: "n1", labels: ["app": "web"])
            s.addPod(name: "web-2", node: "n2", labels: ["app": "web"])
            s.addPodDisruptionBudget(name: "web-pdb", matchLabels: ["app": "web"], maxUnavailable: .int(0))
            let error = await #expect(throws: KubeError.self) {
                try await client.drain(node: "n1", options: fast, clock: ContinuousClock(), logger: quietLogger)
            }
            #expect(error?.code == .drainRefused)
            #expect(error?.blockingPodDisruptionBudget == "default/web-pdb")
            #expect(error?.message.contains("PodDisruptionBudget default/web-pdb") == true)
            #expect(error?.message.contains("needs 2 healthy pods and has 2 currently") == true)
            #expect(s.pod(name: "web-1") != nil)
            #expect(s.stats.evictionRefusals == 1)
        }
    }

    @Test("a PDB still refusing when the time runs out is a refusal naming the budget")
    func budgetStillRefusingAtDeadline() async throws {
        try await withFakeKube { server, client in
            let s = server.state
            s.addPod(name: "web-1", node: "n1", labels: ["app": "web"])
            s.addPod(name: "web-2", node: "n2", labels: ["app": "web"])
            s.addPod(name: "web-3", node: "n3", labels: ["app": "web"], ready: false)
            s.addPodDisruptionBudget(name: "web-pdb", matchLabels: ["app": "web"], minAvailable: .int(2))
            var options = fast
            options.timeout = .seconds(2)
            let error = await #expect(throws: KubeError.self) {
                try await client.drain(node: "n1", options: options, clock: ContinuousClock(), logger: quietLogger)
            }
            #expect(error?.code == .drainRefused)
            #expect(error?.blockingPodDisruptionBudget == "default/web-pdb")
            #expect(error?.message.contains("still refused after") == true, "\(String(describing: error))")
            #expect(s.stats.evictionRefusals >= 1)
        }
    }

    @Test("a pod whose DaemonSet is gone refuses the drain unless forced (kubectl's daemonSet filter)")
    func orphanedDaemonSetPod() async throws {
        try await withFakeKube { server, client in
            let s = server.state
            s.addPod(namespace: "kube-system", name: "svclb-x", node: "n1", owner: ("DaemonSet", "svclb"))
            let error = await #expect(throws: KubeError.self) {
                try await client.drain(node: "n1", options: fast, clock: ContinuousClock(), logger: quietLogger)
            }
            #expect(error?.code == .drainRefused)
            #expect(error?.message.contains("its DaemonSet svclb is gone") == true)
            #expect(s.stats.evictions == 0)
            var forced = fast
            forced.force = true
            let report = try await client.drain(node: "n1", options: forced, clock: ContinuousClock(), logger: quietLogger)
            #expect(report.orphanedDaemonSetEvicted == ["kube-system/svclb-x"])
            #expect(s.pod(namespace: "kube-system", name: "svclb-x") == nil)
        }
    }

    @Test("a pod under two budgets (the API's 500) refuses the drain at once")
    func twoBudgets() async throws {
        try await withFakeKube { server, client in
            let s = server.state
            s.addPod(name: "web-1", node: "n1", labels: ["app": "web", "tier": "front"])
            s.addPodDisruptionBudget(name: "a", matchLabels: ["app": "web"], maxUnavailable: .int(1))
            s.addPodDisruptionBudget(name: "b", matchLabels: ["tier": "front"], maxUnavailable: .int(1))
            let error = await #expect(throws: KubeError.self) {
                try await client.drain(node: "n1", options: fast, clock: ContinuousClock(), logger: quietLogger)
            }
            #expect(error?.code == .drainRefused)
            #expect(error?.message.contains("more than one PodDisruptionBudget") == true)
        }
    }

    @Test("403 NamespaceTerminating is retried until the eviction goes through")
    func namespaceTerminating() async throws {
        try await withFakeKube { server, client in
            let s = server.state
            s.addPod(namespace: "old", name: "web-1", node: "n1")
            s.setNamespaceTerminating("old")
            // Time enough for a full suite on a loaded two-core machine (tests there took 50 s where they take 1).
            var patient = fast
            patient.timeout = .seconds(300)
            let drain = Task { try await client.drain(node: "n1", options: patient, clock: ContinuousClock(), logger: quietLogger) }
            #expect(try await eventually { (s.stats.byRoute["POST pods/{name}/eviction"] ?? 0) >= 2 })
            s.setNamespaceTerminating("old", false)
            let report = try await drain.value
            #expect(report.evicted == ["old/web-1"])
        }
    }

    @Test("a 429's Retry-After is honoured instead of the 5 s default")
    func retryAfterHonoured() async throws {
        try await withFakeKube { server, client in
            let s = server.state
            s.addPod(name: "web-1", node: "n1")
            s.injectFaults(.tooManyRequestsPlainText(retryAfterSeconds: 1), count: 1, pathPrefix: "/api/v1/namespaces/default/pods/web-1/eviction")
            var options = fast
            options.evictRetryDelay = .seconds(60)
            options.timeout = .seconds(300)
            // The clock records every wait the drain asks for: the one after the 429 is the API's 1 s, not 60 s.
            // (Measuring elapsed time instead failed on a loaded machine.)
            let clock = RecordingClock()
            let report = try await client.drain(node: "n1", options: options, clock: clock, logger: quietLogger)
            #expect(report.evicted == ["default/web-1"])
            let waits = clock.waits
            #expect(waits.contains { $0 > .milliseconds(500) && $0 <= .seconds(1) }, "\(waits)")
            #expect(!waits.contains { $0 > .seconds(1) }, "\(waits)")
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

    @Test("evicted pods that take a while to terminate are watched, not polled")
    func waitsForTermination() async throws {
        try await withFakeKube { server, client in
            // Long enough that the drain's first look after the eviction finds the pod still terminating even on a
            // loaded machine (at 400 ms a stalled full-suite run once found it gone already, and needed no watch).
            server.state.setPodTerminationDelay(.seconds(3))
            server.state.addPod(name: "web-1", node: "n1")
            let report = try await client.drain(node: "n1", options: fast, clock: ContinuousClock(), logger: quietLogger)
            #expect(report.evicted == ["default/web-1"])
            #expect(server.state.pod(name: "web-1") == nil)
            // One look, then a watch that sees the DELETED event (polling every 5 ms would GET ~600 times).
            #expect((server.state.stats.byRoute["GET pods/{name}"] ?? 0) <= 2)
            #expect((server.state.stats.byRoute["GET pods (watch, one namespace)"] ?? 0) >= 1)
        }
    }
}

/// The continuous clock, recording how long each wait asked for was.
final class RecordingClock: Clock, Sendable {
    typealias Instant = ContinuousClock.Instant
    private let base = ContinuousClock()
    private let recorded = Mutex<[Duration]>([])

    var now: Instant { base.now }
    var minimumResolution: Duration { base.minimumResolution }
    /// The waits asked for so far, in order.
    var waits: [Duration] { recorded.withLock { $0 } }

    func sleep(until deadline: Instant, tolerance: Duration?) async throws {
        recorded.withLock { $0.append(base.now.duration(to: deadline)) }
        try await base.sleep(until: deadline, tolerance: tolerance)
    }
}
