import Foundation
import Logging
import NK3Agent
import NK3Coordinator
import NK3Kube
import NK3Protocol
import NK3Simulation
import Testing

/// The simulated cluster: real agents (mTLS, signed envelopes, HTTP) over simulated nodes, the fake Kubernetes
/// API following the nodes, and the generated inventory, kubeconfig and PKI.
@Suite("SimulatedCluster (simulation)", .serialized, .timeLimit(.minutes(2)))
struct SimulatedClusterTests {
    static let quiet = Logger(label: "sim-cluster-test", factory: { _ in SwiftLogNoOpLogHandler() })

    /// 1000x: a 60 s simulated reboot takes 60 ms, kubelet Ready 15 ms after boot.
    func withCluster(
        nodes: Int = 3, _ body: (SimulatedCluster) async throws -> Void
    ) async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nk3-sim-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        var options = SimulatedCluster.Options()
        options.cephCheckInterval = 20  // 20 ms real at 1000x
        let cluster = try await SimulatedCluster.start(
            nodes: nodes, speed: .factor(1000), in: dir, options: options, logger: Self.quiet)
        do {
            try await body(cluster)
        } catch {
            await cluster.shutdown()
            throw error
        }
        await cluster.shutdown()
    }

    func eventually(_ timeout: Duration = .seconds(20), _ condition: () async -> Bool) async -> Bool {
        let clock = ContinuousClock()
        let end = clock.now + timeout
        while clock.now < end {
            if await condition() { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return await condition()
    }

    /// Submits a signed command to `node` with the next serial.
    func submit(
        _ command: Command, to node: String, serial: UInt64, in cluster: SimulatedCluster
    ) async throws -> EnvelopeReceipt {
        let envelope = try cluster.signer().sign(command, node: node, serial: serial, now: Date())
        return try await cluster.agentClient(for: node).submit(envelope)
    }

    /// Polls the agent until its operation reaches `phase` (or a final result with that outcome).
    func waitForOperation(
        _ id: String, on node: String, in cluster: SimulatedCluster, _ done: (OperationReport) -> Bool
    ) async throws -> OperationReport? {
        let client = try cluster.agentClient(for: node)
        var last: OperationReport?
        let ok = await eventually {
            last = try? await client.operation(id: id)
            return last.map(done) ?? false
        }
        return ok ? last : nil
    }

    @Test("3 nodes start; every agent answers status over mTLS with its node's facts; files are written")
    func startsAndAnswers() async throws {
        try await withCluster { cluster in
            #expect(cluster.members.count == 3)
            #expect(Set(cluster.members.map(\.port)).count == 3, "distinct ports")
            for m in cluster.members {
                let status = try await cluster.agentClient(for: m.name, role: .reader).status()
                let snap = m.node.snapshot
                #expect(status.hostname == m.name)
                #expect(status.bootID == snap.bootID)
                #expect(status.kernel == "6.6.45")
                #expect(status.currentGeneration == 1)
                #expect(status.kubelet.healthz == true)
                #expect(status.configHash == ConfigFiles.hash(files: try await m.node.readConfigFiles()))
            }
            // The inventory parses with the real parser and names every agent's port.
            let inv = try Inventory.load(path: cluster.inventoryPath)
            #expect(inv.nodes.map(\.name) == cluster.members.map(\.name))
            for m in cluster.members {
                #expect(inv.node(m.name)?[hostvar: "agent_port"] == .int(m.port))
                #expect(inv.node(m.name)?[hostvar: "agent_address"] == .string("127.0.0.1"))
            }
            #expect(inv.nodes.filter(\.isServer).count == 3)
            // The landed configuration is what the coordinator renders from that inventory: no diff at start.
            let renderer = try BundleRenderer.load(
                inventory: inv, signingPublicKeys: [try cluster.pki.signingPublicKey()])
            for m in cluster.members {
                let landed = try await m.node.readConfigFiles()
                #expect(try renderer.render(node: inv.node(m.name)!) == landed)
                // Each node's nk3-agent.nix names the port its agent listens on (issue 14, defect 6).
                #expect(landed[BundleFile.agent]?.contains("port = \(m.port);") == true)
            }
            // The kubeconfig reaches the fake API server, whose nodes mirror the simulated machines.
            let config = try KubeConfig.load(path: cluster.kubeconfigPath)
            try await KubeClient.withClient(config: config, logger: Self.quiet) { kube in
                for m in cluster.members {
                    let n = try await kube.getNode(m.name)
                    #expect(n.isReady)
                    #expect(n.status?.nodeInfo?.bootID == m.node.snapshot.bootID)
                    #expect(n.status?.nodeInfo?.kernelVersion == "6.6.45")
                }
                let ds = try await kube.listDaemonSets(namespace: "kube-system")
                #expect(ds.contains { $0.status?.numberAvailable == 3 && $0.status?.desiredNumberScheduled == 3 })
                let ceph = try await kube.getCephCluster(namespace: "rook-ceph", name: "rook-ceph")
                #expect(ceph.status?.ceph?.health == "HEALTH_OK")
            }
            // Wrong role: the reader certificate cannot submit.
            let env = try cluster.signer().sign(
                .reboot(RebootCommand(reason: "x")), node: "sim-node-1", serial: 1, now: Date())
            await #expect(throws: AgentClientError.self) {
                try await cluster.agentClient(for: "sim-node-1", role: .reader).submit(env)
            }
        }
    }

    @Test("a signed switch apply reaches awaiting_confirm and commits on confirm")
    func switchApplyCommits() async throws {
        try await withCluster { cluster in
            let node = "sim-node-2"
            var files = try await cluster.node(node).readConfigFiles()
            files["configuration.nix"]! += "# changed by the test\n"
            let receipt = try await submit(
                .apply(ApplyBundle(files: files, action: .switch, confirmTimeoutSeconds: 600)), to: node, serial: 1,
                in: cluster)
            let opID = try #require(receipt.operationID)
            let report = try await waitForOperation(opID, on: node, in: cluster) {
                $0.operation?.phase == .awaitingConfirm
            }
            #expect(report != nil)
            #expect(report?.logTail.contains("derivations will be built") == true)
            var status = try await cluster.agentClient(for: node).status()
            #expect(status.currentGeneration == 2)
            #expect(status.profileGeneration == 2)

            let confirm = try await submit(.confirm(ConfirmCommand(applySerial: 1)), to: node, serial: 2, in: cluster)
            #expect(confirm.phase == .committed)
            status = try await cluster.agentClient(for: node).status()
            #expect(status.lastResult?.outcome == .committed)
            #expect(status.operation == nil)
            #expect(try await cluster.agentClient(for: node).files().files == files)
        }
    }

    @Test("boot apply with --upgrade, then reboot: the agent comes back on the same port with a new boot id and kernel 6.6.46")
    func bootApplyAndReboot() async throws {
        try await withCluster { cluster in
            let node = "sim-node-1"
            let member = try cluster.member(node)
            let port = member.port
            let before = try await cluster.agentClient(for: node).status()
            let files = try await member.node.readConfigFiles()
            let receipt = try await submit(
                .apply(
                    ApplyBundle(
                        files: files, action: .boot, upgrade: true, nixChannel: SimulatedChannels.url(of: "nixos-24.05"),
                        confirmTimeoutSeconds: 600)), to: node, serial: 1, in: cluster)
            let opID = try #require(receipt.operationID)
            let waiting = try await waitForOperation(opID, on: node, in: cluster) { $0.operation?.phase == .awaitingConfirm }
            #expect(waiting != nil)
            let staged = try await cluster.agentClient(for: node).status()
            #expect(staged.profileKernel == "6.6.46")
            #expect(staged.kernel == "6.6.45")

            _ = try await submit(.reboot(RebootCommand(reason: "test")), to: node, serial: 2, in: cluster)
            #expect(await eventually { member.node.snapshot.bootID != before.bootID && member.node.snapshot.kubeletReady })
            var after: AgentStatus?
            #expect(await eventually {
                after = try? await cluster.agentClient(for: node).status()
                return after?.bootID != nil && after?.bootID != before.bootID
            })
            #expect(member.port == port)
            #expect(member.agentProcesses == 2)
            #expect(after?.kernel == "6.6.46")
            #expect(after?.bootedGeneration == 2)
            #expect(after?.operation?.phase == .awaitingConfirm, "the engine resumed the apply and re-armed its deadline")
            #expect(after?.operation?.deadline.map { $0 > Date() } == true)

            let confirm = try await submit(.confirm(ConfirmCommand(applySerial: 1)), to: node, serial: 3, in: cluster)
            #expect(confirm.phase == .committed)
            // Kubernetes follows: new boot id and kernel, Ready again.
            #expect(await eventually {
                let n = cluster.kube.state.node(node)
                return n?.status?.nodeInfo?.bootID == member.node.snapshot.bootID
                    && n?.status?.nodeInfo?.kernelVersion == "6.6.46" && n?.isReady == true
            })
        }
    }

    @Test("while a node is down: Ready Unknown, DaemonSets recovering, Ceph HEALTH_WARN; after it returns all healthy again")
    func kubernetesFollowsDownNode() async throws {
        try await withCluster { cluster in
            let node = "sim-node-3"
            let m = try cluster.member(node)
            try await cluster.inject(.neverReturnsAfterReboot, on: node)
            _ = try await submit(.reboot(RebootCommand(reason: "test")), to: node, serial: 1, in: cluster)
            #expect(await eventually { m.node.snapshot.power == .down })
            // Not Ready while down: Unknown once heartbeats stop, or False if the simulated kubelet's last
            // "not ready" is applied after the power-down under load (a real kubelet may post NotReady while
            // shutting down, before the node controller marks it Unknown — docs/UPSTREAM.md#nodes).
            #expect(await eventually {
                let ready = cluster.kube.state.node(node)?.status?.conditions?.first { $0.type == "Ready" }?.status
                return ready == "Unknown" || ready == "False"
            })
            #expect(await eventually {
                let ds: DaemonSet? = cluster.kube.state.get(.daemonsets, namespace: "kube-system", name: "svclb-traefik")
                return ds?.status?.numberAvailable == 2 && ds?.status?.desiredNumberScheduled == 3
            })
            #expect(await eventually {
                let c: CephCluster? = cluster.kube.state.get(.cephclusters, namespace: "rook-ceph", name: "rook-ceph")
                return c?.status?.ceph?.health == "HEALTH_WARN"
            })
            // The machine is down: its agent process stops answering (asynchronously, as the simulation tears
            // the old process down).
            #expect(await eventually { (try? await cluster.agentClient(for: node).status()) == nil })

            try await cluster.clear(.neverReturnsAfterReboot, on: node)
            #expect(await eventually { (try? await cluster.agentClient(for: node).status()) != nil })
            #expect(await eventually {
                let ds: DaemonSet? = cluster.kube.state.get(.daemonsets, namespace: "kube-system", name: "svclb-traefik")
                let c: CephCluster? = cluster.kube.state.get(.cephclusters, namespace: "rook-ceph", name: "rook-ceph")
                return ds?.status?.numberAvailable == 3 && c?.status?.ceph?.health == "HEALTH_OK"
                    && c?.status?.ceph?.previousHealth == "HEALTH_WARN"
            })
        }
    }

    @Test("eviction through the API of a cordoned node's pod reschedules it on another node; a blocking PDB refuses with 429")
    func evictionAndPDB() async throws {
        try await withCluster { cluster in
            let config = try KubeConfig.load(path: cluster.kubeconfigPath)
            try await KubeClient.withClient(config: config, logger: Self.quiet) { kube in
                // Cordoned first, as a drain does: the replica set's periodic pass may recreate the pod before the
                // eviction's own pass, and an uncordoned node-1 (now with the fewest api pods) would then be the
                // scheduler's choice — in the simulation as in Kubernetes.
                try await kube.setUnschedulable("sim-node-1", true)
                let pods = try await kube.listPods(onNode: "sim-node-1")
                let api = try #require(pods.first { $0.metadata.name?.hasPrefix("api-") == true })
                try await kube.evictPod(namespace: "default", name: api.metadata.name!, gracePeriodSeconds: nil)
                #expect(await eventually {
                    let all: [Pod] = cluster.kube.state.list(.pods, namespace: "default")
                    let apiPods = all.filter { $0.metadata.labels?["app"] == "api" }
                    return apiPods.count == 2 && apiPods.allSatisfy { $0.spec?.nodeName != "sim-node-1" && $0.isReady }
                })

                try await cluster.inject(.pdbBlocksEviction, on: "sim-node-2")
                do {
                    try await kube.evictPod(namespace: "default", name: "pinned-sim-node-2-0", gracePeriodSeconds: nil)
                    Issue.record("eviction should have been refused by the PDB")
                } catch let e as KubeError {
                    #expect(e.httpStatus == 429)
                }
                try await cluster.clear(.pdbBlocksEviction, on: "sim-node-2")
                #expect(cluster.kube.state.podDisruptionBudget(namespace: "default", name: "pinned-sim-node-2") == nil)
            }
        }
    }

    @Test("faults: evaluation error fails the apply and restores files; an unreachable agent comes back on the same port")
    func faults() async throws {
        try await withCluster { cluster in
            let node = "sim-node-1"
            let m = try cluster.member(node)
            let original = try await m.node.readConfigFiles()
            try await cluster.inject(.rebuildEvaluationError, on: node)
            var files = original
            files["configuration.nix"]! += "# broken\n"
            let receipt = try await submit(
                .apply(ApplyBundle(files: files, action: .switch)), to: node, serial: 1, in: cluster)
            let report = try await waitForOperation(receipt.operationID!, on: node, in: cluster) { $0.result != nil }
            #expect(report?.result?.outcome == .failed)
            #expect(report?.result?.message.contains("undefined variable 'foo'") == true)
            #expect(try await m.node.readConfigFiles() == original)

            let port = m.port
            try await cluster.inject(.agentUnreachable, on: node)
            do {
                _ = try await cluster.agentClient(for: node, timeout: .seconds(2)).status()
                Issue.record("a stopped agent answered")
            } catch let e as AgentClientError {
                #expect(e.code == .unreachable)
            }
            try await cluster.clear(.agentUnreachable, on: node)
            let status = try await cluster.agentClient(for: node).status()
            #expect(status.lastAcceptedSerial == 1, "the new process kept the persisted serial")
            #expect(m.port == port)
        }
    }

    @Test("an agent whose port another socket holds when it starts is retried like systemd's Restart=always, on the same port; only the start that served counts as a process")
    func startRetriedWhilePortHeld() async throws {
        try await withCluster(nodes: 1) { cluster in
            let node = "sim-node-1"
            let m = try cluster.member(node)
            let port = m.port
            #expect(!LoopbackSockets.ephemeralPortRange().contains(port),
                    "below the ephemeral range, where no outgoing connection can take it during a reboot")
            try await cluster.inject(.agentUnreachable, on: node)
            // What took the port in CI once: another connection's local end (127.0.0.1:port, no SO_REUSEADDR).
            let holder = try LoopbackSockets.bind(port: port)
            let restart = Task { try await cluster.clear(.agentUnreachable, on: node) }
            let failed = await eventually { m.agentStartFailures >= 1 }
            close(holder.fd)
            #expect(failed, "the start failed while the port was held")
            try await restart.value
            #expect(m.port == port)
            #expect(m.agentProcesses == 2)
            let status = try await cluster.agentClient(for: node).status()
            #expect(status.bootID == m.node.snapshot.bootID, "the restarted agent answers, on the same boot")
        }
    }

    @Test("a simulated agent's port stays reserved while it is down: no other stable-port binder in this process is handed it (CI stop 11: a restarting test server found its port taken)")
    func downAgentsPortIsNotHandedOut() async throws {
        try await withCluster(nodes: 1) { cluster in
            let m = try cluster.member("sim-node-1")
            try await cluster.inject(.agentUnreachable, on: "sim-node-1")  // port closed, as during a reboot
            var handedOut = Set<Int>()
            var held: [LoopbackSockets.PortReservation] = []
            for _ in 0..<200 {
                // A binder that takes any port it is offered: only the reservation can keep it off the agent's.
                let (port, reservation) = try await LoopbackSockets.bindingStablePort { $0 }
                held.append(try #require(reservation))
                handedOut.insert(port)
            }
            #expect(handedOut.count == 200, "no port handed out twice while reserved")
            #expect(!handedOut.contains(m.port))
            #expect(held.allSatisfy { !LoopbackSockets.ephemeralPortRange().contains($0.port) })
            try await cluster.clear(.agentUnreachable, on: "sim-node-1")
            #expect(m.agentProcesses == 2)
        }
    }

    @Test("sockets(onPort:) names a listener on the port, for bind failures' messages")
    func socketsOnPortNamesTheListener() throws {
        let listener = try LoopbackSockets.bind(listen: 1)
        defer { close(listener.fd) }
        // /proc/net/tcp is produced a page at a time while the socket table changes, so one read can miss a socket
        // when other tests open and close thousands of connections meanwhile (a full-suite run saw []): read again.
        var found: [String] = []
        for _ in 0..<50 {
            found = LoopbackSockets.sockets(onPort: listener.port)
            if found.contains(where: { $0.hasPrefix("LISTEN 127.0.0.1:\(listener.port) <- 0.0.0.0:0") }) { break }
        }
        #expect(found.contains { $0.hasPrefix("LISTEN 127.0.0.1:\(listener.port) <- 0.0.0.0:0") }, "\(found)")
    }
}
