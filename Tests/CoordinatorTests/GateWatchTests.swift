import Foundation
@testable import NK3Coordinator
import NK3Kube
import NK3Simulation
import Synchronization
import Testing

/// A rollout's DaemonSet and Deployment gates and its node reads over watches (`WatchedList`, `WorkloadWatches`).
extension GateWaitTests {
    @Test("a rollout's DaemonSet and Deployment gates: one list and one watch per namespace for the whole rollout, not a list per gate round; a change still comes through the watch; a watch the server ends is listed anew (docs/UPSTREAM.md#watch)")
    func rolloutWorkloadGatesWatch() async throws {
        try await withCluster { server, client in
            let s = server.state
            s.addNode("n1")
            s.setDaemonSet(namespace: "default", name: "svclb", desired: 1, available: 1)
            s.setDeployment(namespace: "default", name: "web", replicas: 2, available: 2)
            s.setDaemonSet(namespace: "kube-system", name: "flannel", desired: 1, available: 1)
            let dsLists = { s.stats.byRoute["GET daemonsets (list, one namespace)"] ?? 0 }
            let deployLists = { s.stats.byRoute["GET deployments (list, one namespace)"] ?? 0 }
            let cluster = KubeRolloutCluster(
                kube: client, clusterName: "c", watchNamespaces: ["default", "kube-system"], ceph: nil,
                pollInterval: .milliseconds(20), clock: ContinuousClock(), logger: Self.logger)
            for _ in 0..<5 {
                try await cluster.runGates(since: nil, timeout: .seconds(30), report: { _ in })
            }
            #expect(dsLists() == 2 && deployLists() == 2, "one list per namespace and kind: \(s.stats.byRoute)")
            #expect(
                await Self.within {
                    s.stats.byRoute["GET daemonsets (watch, one namespace)"] == 2
                        && s.stats.byRoute["GET deployments (watch, one namespace)"] == 2 && s.openWatches == 5
                }, "node watch + 2 × 2 workload watches, kept after the gates pass: \(s.stats.byRoute)")

            // A Deployment that loses a replica holds the next gate wait until it recovers through the watch.
            let web = try #require(cluster.workloadWatches.deployments["default"])
            #expect(await Self.within { web.isWatching })
            s.setDeployment(namespace: "default", name: "web", replicas: 2, available: 1)
            #expect(await Self.within { web.cached("web")?.availableCondition?.isTrue == false })
            let gateWait = Task { try await cluster.runGates(since: nil, timeout: .seconds(30), report: { _ in }) }
            s.setDeployment(namespace: "default", name: "web", replicas: 2, available: 2)
            try await gateWait.value
            #expect(dsLists() == 2 && deployLists() == 2, "still one list each")

            // The server ends the watches (timeoutSeconds): the next gate wait lists again and watches anew.
            s.endWatches()
            #expect(
                await Self.within {
                    !cluster.nodeWatch.isWatching && cluster.workloadWatches.daemonSets.values.allSatisfy { !$0.isWatching }
                        && cluster.workloadWatches.deployments.values.allSatisfy { !$0.isWatching }
                }, "every watch of the rollout saw its stream end")
            try await cluster.runGates(since: nil, timeout: .seconds(30), report: { _ in })
            #expect(deployLists() == 4, "a list to watch from again: \(s.stats.byRoute)")
            #expect(await Self.within { s.openWatches == 5 })
        }
    }

    @Test("a lone DaemonSet gate (not a rollout's) still lists on every check")
    func loneWorkloadGateLists() async throws {
        try await withCluster { server, client in
            let s = server.state
            s.setDaemonSet(namespace: "default", name: "svclb", desired: 1, available: 1)
            let gate = HealthGates.daemonSets(client, namespace: "default")
            for _ in 0..<3 { _ = try await gate.check() }
            #expect(s.stats.byRoute["GET daemonsets (list, one namespace)"] == 3 && s.stats.watches == 0)
        }
    }

    @Test("a watch answered with ERROR 410 Expired ends; the next read lists again and watches from the new list (client-go reflector relists)")
    func watchRelistsAfterExpired() async throws {
        let lists = Mutex(0)
        let watchedFrom = Mutex<[String]>([])
        let watched = WatchedList<Node>(
            .init(
                list: { [] },
                listForWatch: {
                    let n = lists.withLock { $0 += 1; return $0 }
                    return ([Self.node("n\(n)")], "\(n * 100)")
                },
                watch: { rv in
                    watchedFrom.withLock { $0.append(rv) }
                    // The API server's answer to a resourceVersion it no longer holds: HTTP 200, one ERROR event
                    // whose Status is 410 Expired, and the end of the stream (docs/UPSTREAM.md#watch).
                    return AsyncThrowingStream { c in
                        c.yield(.error(KubeStatus(message: "too old resource version: \(rv) (101)", reason: "Expired", code: 410)))
                        c.finish()
                    }
                }, key: { $0.name }),
            keepWatching: true)
        #expect(try await watched.items().map(\.name) == ["n1"])
        #expect(await Self.within { !watched.isWatching }, "the ERROR event ended the watch and emptied the view")
        #expect(try await watched.items().map(\.name) == ["n2"], "listed again, not answered from the expired view")
        #expect(lists.withLock { $0 } == 2)
        #expect(await Self.within { watchedFrom.withLock { $0 } == ["100", "200"] }, "each watch starts from its own list")
    }

    @Test("a rollout reads a node's readiness from the node watch when it shows Ready from the awaited boot, and cordons and uncordons from the watch's copy: no GET of the node; without a boot to go by, a GET")
    func rolloutNodeReadsFromWatch() async throws {
        try await withCluster { server, client in
            let s = server.state
            s.addNode("n1", bootID: "boot-2")
            s.addNode("n2")
            let gets = { s.stats.byRoute["GET nodes/{name}"] ?? 0 }
            let cluster = KubeRolloutCluster(
                kube: client, clusterName: "c", watchNamespaces: [], ceph: nil, pollInterval: .milliseconds(20),
                clock: ContinuousClock(), logger: Self.logger)
            try await cluster.runGates(since: nil, timeout: .seconds(30), report: { _ in })
            #expect(await Self.within { cluster.nodeWatch.isWatching })

            try await cluster.cordon("n1", reason: "test")
            #expect(s.node("n1")?.isUnschedulable == true)
            #expect(gets() == 0, "the cordon patch carried the watch copy's resourceVersion instead of a GET")
            #expect(await Self.within { cluster.nodeWatch.cached("n1")?.isUnschedulable == true })

            let readiness = try await cluster.nodeReadiness("n1", boot: NodeBoot(bootID: "boot-2", since: nil))
            #expect(readiness == .ready)
            #expect(gets() == 0, "the view showed Ready from the awaited boot")
            #expect(try await cluster.nodeReadiness("n1", boot: NodeBoot(bootID: "boot-3", since: nil)) == .previousBoot(apiBootID: "boot-2"))
            #expect(gets() == 1, "a view that does not show the awaited boot's Ready is checked by a GET")
            #expect(try await cluster.nodeReadiness("n1", boot: nil) == .ready)
            #expect(gets() == 2, "without a boot to go by, a GET")

            #expect(try await cluster.uncordonIfOurs("n1"))
            #expect(s.node("n1")?.isUnschedulable == false)
            #expect(gets() == 2, "the uncordon patch carried the watch copy's resourceVersion")
        }
    }

    static func node(_ name: String) -> Node {
        Node(metadata: ObjectMeta(name: name, resourceVersion: "1"))
    }
}

extension GateWaitTests {
    @Test("a rollout watching many namespaces (more open watches than the HTTP client's default of 8 connections per host) still gets its other requests through")
    func manyWatchesDoNotStarveRequests() async throws {
        try await withCluster { server, client in
            let s = server.state
            s.addNode("n1")
            let namespaces = (1...6).map { "ns\($0)" }
            for ns in namespaces { s.setDaemonSet(namespace: ns, name: "d", desired: 1, available: 1) }
            let cluster = KubeRolloutCluster(
                kube: client, clusterName: "c", watchNamespaces: namespaces, ceph: nil, pollInterval: .milliseconds(20),
                clock: ContinuousClock(), logger: Self.logger)
            try await cluster.runGates(since: nil, timeout: .seconds(30), report: { _ in })
            #expect(await Self.within { s.openWatches == 13 }, "1 node watch + 6 × 2 workload watches")
            // Each of these waits for a free connection if the watches hold them all.
            try await cluster.cordon("n1", reason: "test")
            #expect(try await client.getNode("n1").isUnschedulable)
            try await cluster.runGates(since: nil, timeout: .seconds(30), report: { _ in })
        }
    }
}
