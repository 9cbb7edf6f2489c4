import Foundation
import NK3Kube
import NK3Simulation
import Testing

/// The real client against the fake API server over real TLS on 127.0.0.1.
@Suite("KubeClient against the fake API server")
struct KubeClientTests {
    @Test("get node decodes conditions, unschedulable, annotations and nodeInfo (docs/UPSTREAM.md#nodes)")
    func getNode() async throws {
        try await withFakeKube { server, client in
            server.state.addNode("n1", controlPlane: true, kernelVersion: "6.6.30", bootID: "boot-1")
            server.state.addNode("n2", ready: false)
            let n1 = try await client.getNode("n1")
            #expect(n1.isReady)
            #expect(n1.readyCondition?.reason == "KubeletReady")
            #expect(!n1.isUnschedulable)
            #expect(n1.bootID == "boot-1")
            #expect(n1.kernelVersion == "6.6.30")
            #expect(n1.metadata.labels?["node-role.kubernetes.io/control-plane"] != nil)
            #expect(n1.annotation("k3s.io/node-args") == "[\"server\"]")
            let n2 = try await client.getNode("n2")
            #expect(!n2.isReady)
            #expect(n2.readyCondition?.reason == "KubeletNotReady")
            let all = try await client.listNodes()
            #expect(all.map(\.name).sorted() == ["n1", "n2"])
        }
    }

    @Test("404 comes back as .notFound with the API's Status message (docs/UPSTREAM.md#api-errors)")
    func notFound() async throws {
        try await withFakeKube { _, client in
            let error = await #expect(throws: KubeError.self) { try await client.getNode("ghost") }
            #expect(error?.code == .notFound)
            #expect(error?.httpStatus == 404)
            #expect(error?.status?.reason == "NotFound")
            #expect(error?.status?.message == "nodes \"ghost\" not found")
        }
    }

    @Test("three 500s then success: an idempotent GET is retried")
    func retriesServerErrors() async throws {
        try await withFakeKube { server, client in
            server.state.addNode("n1")
            server.state.injectFaults(.internalError, count: 3, pathPrefix: "/api/v1/nodes")
            let node = try await client.getNode("n1")
            #expect(node.name == "n1")
            #expect(server.state.stats.faultsServed == 3)
        }
    }

    @Test("429 with a plain-text body (API priority and fairness, docs/UPSTREAM.md#api-errors) then success")
    func retriesPlainText429() async throws {
        try await withFakeKube { server, client in
            server.state.addNode("n1")
            server.state.injectFaults(.tooManyRequestsPlainText(retryAfterSeconds: 1), count: 2)
            let nodes = try await client.listNodes()
            #expect(nodes.count == 1)
            #expect(server.state.stats.faultsServed == 2)
        }
    }

    @Test("persistent plain-text 429 surfaces as .tooManyRequests with the text, not a decode crash")
    func plainText429Surfaces() async throws {
        try await withFakeKube { server, client in
            server.state.injectFaults(.tooManyRequestsPlainText(retryAfterSeconds: 1), count: 100)
            let error = await #expect(throws: KubeError.self) { try await client.listNodes() }
            #expect(error?.code == .tooManyRequests)
            #expect(error?.retryAfterSeconds == 1)
            #expect(error?.message.contains("Too many requests, please try again later.") == true)
            #expect(server.state.stats.faultsServed == fastOptions.maxAttempts)
        }
    }

    @Test("503s then success; a POST is not retried")
    func serviceUnavailableAndNonIdempotent() async throws {
        try await withFakeKube { server, client in
            server.state.addNode("n1")
            server.state.injectFaults(.serviceUnavailable, count: 2)
            let n1 = try await client.getNode("n1")
            #expect(n1.name == "n1")
            server.state.injectFaults(.internalError, count: 1)
            let lease = Lease(metadata: ObjectMeta(name: "l", namespace: "kube-system"))
            let error = await #expect(throws: KubeError.self) { try await client.createLease(lease) }
            #expect(error?.code == .server)
            #expect(server.state.stats.faultsServed == 3)
        }
    }

    @Test("Lease create / get / update with resourceVersion; a stale update is a typed 409 (docs/UPSTREAM.md#lease)")
    func leaseOptimisticConcurrency() async throws {
        try await withFakeKube { _, client in
            let now = KubeTime.formatMicro(Date())
            let created = try await client.createLease(
                Lease(
                    metadata: ObjectMeta(name: "nk3-rollout", namespace: "kube-system"),
                    spec: LeaseSpec(holderIdentity: "alice", leaseDurationSeconds: 30, acquireTime: now, renewTime: now, leaseTransitions: 0)))
            #expect(created.metadata.resourceVersion != nil)
            let again = await #expect(throws: KubeError.self) { try await client.createLease(created) }
            #expect(again?.code == .conflict)
            #expect(again?.status?.reason == "AlreadyExists")

            var a = try await client.getLease(namespace: "kube-system", name: "nk3-rollout")
            var b = a
            a.spec.renewTime = KubeTime.formatMicro(Date())
            let updated = try await client.updateLease(a)
            #expect(updated.metadata.resourceVersion != a.metadata.resourceVersion)
            b.spec.holderIdentity = "bob"
            let conflict = await #expect(throws: KubeError.self) { try await client.updateLease(b) }
            #expect(conflict?.code == .conflict)
            #expect(conflict?.status?.message?.contains("the object has been modified") == true)
            let current = try await client.getLease(namespace: "kube-system", name: "nk3-rollout")
            #expect(current.spec.holderIdentity == "alice")

            var noRV = updated
            noRV.metadata.resourceVersion = nil
            let invalid = await #expect(throws: KubeError.self) { try await client.updateLease(noRV) }
            #expect(invalid?.code == .invalid)
        }
    }

    @Test("lists of DaemonSets, Deployments, PDBs (status derived) and the CephCluster")
    func appsAndCeph() async throws {
        try await withFakeKube { server, client in
            server.state.setDaemonSet(namespace: "kube-system", name: "svclb", desired: 3, available: 2)
            server.state.setDeployment(namespace: "default", name: "web", replicas: 3, available: 3)
            server.state.addPod(name: "web-1", node: "n1", labels: ["app": "web"])
            server.state.addPod(name: "web-2", node: "n2", labels: ["app": "web"])
            server.state.addPod(name: "web-3", node: "n3", labels: ["app": "web"], ready: false)
            server.state.addPodDisruptionBudget(name: "web-pdb", matchLabels: ["app": "web"], minAvailable: .int(1))
            server.state.setCephHealth(health: "HEALTH_OK", lastChecked: Date(timeIntervalSince1970: 1_714_564_800))

            let ds = try await client.listDaemonSets(namespace: "kube-system")
            #expect(ds.first?.status?.desiredNumberScheduled == 3)
            #expect(ds.first?.status?.numberAvailable == 2)
            let deps = try await client.listDeployments(namespace: "default")
            #expect(deps.first?.availableCondition?.reason == "MinimumReplicasAvailable")
            let pdbs = try await client.listPodDisruptionBudgets(namespace: "default")
            #expect(pdbs.first?.status?.currentHealthy == 2)
            #expect(pdbs.first?.status?.expectedPods == 3)
            #expect(pdbs.first?.status?.disruptionsAllowed == 1)
            let ceph = try await client.getCephCluster(namespace: "rook-ceph", name: "rook-ceph")
            #expect(ceph.status?.ceph?.health == "HEALTH_OK")
            #expect(ceph.status?.ceph?.lastChecked == "2024-05-01T12:00:00Z")
            let none = try await client.listDaemonSets(namespace: "empty")
            #expect(none.isEmpty)
        }
    }

    @Test("pods on a node via fieldSelector spec.nodeName (docs/UPSTREAM.md#drain)")
    func podsOnNode() async throws {
        try await withFakeKube { server, client in
            server.state.addPod(name: "a", node: "n1")
            server.state.addPod(namespace: "kube-system", name: "b", node: "n1", owner: ("DaemonSet", "svclb"))
            server.state.addPod(name: "c", node: "n2")
            let pods = try await client.listPods(onNode: "n1")
            #expect(pods.map(\.qualifiedName).sorted() == ["default/a", "kube-system/b"])
        }
    }

    @Test("watch streams ADDED for existing nodes, then MODIFIED as readiness changes (docs/UPSTREAM.md#watch)")
    func watchNodes() async throws {
        try await withFakeKube { server, client in
            server.state.addNode("n1")
            let stream = client.watch("/api/v1/nodes", as: Node.self, timeoutSeconds: 60)
            var iterator = stream.makeAsyncIterator()
            guard case .added(let first)? = try await iterator.next() else {
                Issue.record("expected ADDED first")
                return
            }
            #expect(first.name == "n1" && first.isReady)
            server.state.setNodeReady("n1", false)
            guard case .modified(let changed)? = try await iterator.next() else {
                Issue.record("expected MODIFIED")
                return
            }
            #expect(!changed.isReady)
            #expect(changed.readyCondition?.reason == "KubeletNotReady")
        }
    }

    @Test("a watch from a list's resourceVersion gets the changes made between the list and the watch, and no ADDED replay (docs/UPSTREAM.md#watch)")
    func watchFromListResourceVersion() async throws {
        try await withFakeKube { server, client in
            server.state.addNode("n1")
            server.state.addNode("n2")
            let (nodes, rv) = try await client.listNodesForWatch()
            #expect(nodes.map(\.name).sorted() == ["n1", "n2"])
            let version = try #require(rv)
            server.state.setNodeReady("n2", false)  // after the list, before the watch
            var iterator = client.watchNodes(from: version).makeAsyncIterator()
            guard case .modified(let changed)? = try await iterator.next() else {
                Issue.record("expected the MODIFIED made before the watch started")
                return
            }
            #expect(changed.name == "n2" && !changed.isReady)
            server.state.setNodeReady("n2", true)
            guard case .modified(let back)? = try await iterator.next() else {
                Issue.record("expected a live MODIFIED")
                return
            }
            #expect(back.name == "n2" && back.isReady)
        }
    }

    @Test("a watch from a resourceVersion older than the server's history gets one ERROR event, 410 Expired, and the stream ends (docs/UPSTREAM.md#watch)")
    func watchFromExpiredResourceVersion() async throws {
        try await withFakeKube { server, client in
            server.state.addNode("n1")
            var events: [WatchEvent<Node>] = []
            for try await event in client.watchNodes(from: "5") { events.append(event) }
            #expect(events.count == 1)
            guard case .error(let status)? = events.first else {
                Issue.record("expected an ERROR event, got \(events)")
                return
            }
            #expect(status.code == 410 && status.reason == "Expired")
            #expect(status.message?.contains("too old resource version") == true)
        }
    }
}
