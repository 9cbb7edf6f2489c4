import Foundation
import NK3Agent
import NK3Coordinator
import NK3Kube
import NK3Protocol
import NK3Simulation
import Synchronization
import Testing

/// End-to-end rollouts that succeed: the real coordinator (`ClusterSession.load` + `.rollout`, what
/// `nk3 apply/upgrade` run) against a simulated cluster of real agents.
extension E2E {
@Suite("E2E: rollouts (simulation)", .timeLimit(.minutes(2)))
struct E2ERolloutTests {
    @Test("a template change rolls through 3 nodes: files landed, committed, new generation booted, nothing cordoned, lease released; the Python nk3's lines in order")
    func configChangeRollsThrough() async throws {
        try await E2ECluster.with { c in
            let before = try await c.statuses()
            try c.editTemplate()
            let rendered = try c.rendered()
            let sink = E2ESink()
            let human = Mutex("")
            let humanSink = HumanEventSink(
                useColor: false, out: { t in human.withLock { $0 += t } }, err: { t in human.withLock { $0 += t } })
            let summary = try await c.rollout(.apply(.boot), sink: FanOutEventSink([sink, humanSink]))

            #expect(summary.updated == c.names, "\(sink.transcript)")
            #expect(summary.unchanged.isEmpty)
            let after = try await c.statuses()
            for n in c.names {
                let s = try #require(after[n])
                let b = try #require(before[n])
                #expect(try await c.files(on: n) == rendered[n], "\(n): the rendered files landed")
                #expect(try await c.files(on: n)["configuration.nix"]?.contains(E2ECluster.changedLine) == true)
                #expect(s.configHash == ConfigFiles.hash(files: rendered[n]!))
                #expect(s.lastResult?.outcome == .committed, "\(n): \(String(describing: s.lastResult))")
                #expect(s.operation == nil)
                #expect(s.bootID != b.bootID, "\(n) rebooted")
                #expect(s.bootedGeneration == (b.bootedGeneration ?? 0) + 1, "\(n) booted the new generation")
                #expect(s.currentGeneration == s.bootedGeneration)
                #expect(s.profileGeneration == s.bootedGeneration)
                // The Python nk3's lines, in this order, for each node.
                let lines = [
                    "\(n) modified:", "Rebuilding NixOS on \(n)", "Draining \(n)", "Rebooting \(n)", "\(n) is reachable",
                    "kubelet is ready on \(n)", "\(n) uncordoned",
                ]
                #expect(sink.inOrder(lines), "\(n): \(lines) not in order in:\n\(sink.transcript)")
            }
            // One node at a time (budget 1): node 2 starts only after node 1 is back.
            #expect(sink.inOrder(["sim-node-1 uncordoned", "Rebuilding NixOS on sim-node-2", "sim-node-2 uncordoned",
                                  "Rebuilding NixOS on sim-node-3"]))
            // The diff shows the added line.
            #expect(sink.events.contains { $0.status == .diff && $0.message.contains("+" + E2ECluster.changedLine) })
            #expect(sink.messages.last == "Rollout complete: 3 updated, 0 unchanged")
            #expect(c.cordoned().isEmpty)
            #expect(c.cordonedByNK3().isEmpty)
            let lease = try #require(c.lease())
            #expect(lease.spec.holderIdentity == nil, "the lease is released")
            #expect(lease.metadata.annotations?["nk3.io/rollout-progress"] == nil, "progress cleared on success")
            // The human sink printed the same lines, one per line.
            let text = human.withLock { $0 }
            #expect(text.contains("Rebooting sim-node-2\nsim-node-2 is reachable\n"))
            #expect(text.contains("+" + E2ECluster.changedLine + "\n"))

            // A second apply has nothing to do and touches nothing.
            let again = E2ESink()
            let second = try await c.rollout(.apply(.boot), sink: again)
            #expect(second.updated.isEmpty)
            #expect(second.unchanged == c.names)
            for n in c.names { #expect(again.messages.contains("No action needed on \(n)")) }
            #expect(!again.messages.contains { $0.hasPrefix("Rebooting") })
            let unchanged = try await c.statuses()
            for n in c.names { #expect(unchanged[n]?.bootID == after[n]?.bootID) }
        }
    }

    @Test("--output json: every line of a whole rollout is one JSON object with phase, status, message (and node when about one)")
    func jsonLines() async throws {
        try await E2ECluster.with { c in
            try c.editTemplate()
            let lines = Mutex<[String]>([])
            let json = JSONLinesEventSink(out: { t in lines.withLock { $0.append(t) } })
            let sink = E2ESink()
            _ = try await c.rollout(.apply(.boot), sink: FanOutEventSink([json, sink]))
            let out = lines.withLock { $0 }
            #expect(out.count == sink.events.count)
            #expect(out.count > 20)
            var nodesSeen = Set<String>()
            var phasesSeen = Set<String>()
            for (line, event) in zip(out, sink.events) {
                #expect(line.hasSuffix("\n"))
                #expect(line.dropLast().contains("\n") == false, "one object per line: \(line)")
                let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                let o = try #require(object, "not a JSON object: \(line)")
                let phase = try #require(o["phase"] as? String)
                #expect(RolloutPhase(rawValue: phase) != nil, "\(phase)")
                let status = try #require(o["status"] as? String)
                #expect(RolloutEventStatus(rawValue: status) != nil, "\(status)")
                #expect(o["message"] as? String == event.message)
                #expect(o["timestamp"] is String)
                if let node = event.node {
                    #expect(o["node"] as? String == node, "node-tagged event without its node: \(line)")
                    nodesSeen.insert(node)
                }
                phasesSeen.insert(phase)
            }
            #expect(nodesSeen == Set(c.names))
            #expect(phasesSeen.isSuperset(of: ["plan", "rebuild", "drain", "reboot", "reachable", "ready", "uncordon", "gates"]))
            // It decodes back into the same events.
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .custom { d in
                let s = try d.singleValueContainer().decode(String.self)
                guard let date = try? Date(s, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) else {
                    throw DecodingError.dataCorrupted(.init(codingPath: d.codingPath, debugDescription: s))
                }
                return date
            }
            let decoded = try out.map { try decoder.decode(RolloutEvent.self, from: Data($0.utf8)) }
            #expect(decoded.map(\.message) == sink.messages)
            #expect(decoded.map(\.node) == sink.events.map(\.node))
        }
    }

    @Test("upgrade: \"Kernel upgraded from 6.6.45 to 6.6.46 on X\" for each node; a second upgrade says \"No upgrade needed on X\" and reboots nothing")
    func upgradeThenNoUpgrade() async throws {
        try await E2ECluster.with { c in
            let before = try await c.statuses()
            for n in c.names { #expect(before[n]?.kernel == "6.6.45") }
            let sink = E2ESink()
            let summary = try await c.rollout(.upgrade(.boot), sink: sink)
            #expect(summary.updated == c.names, "\(sink.transcript)")
            let upgraded = try await c.statuses()
            for n in c.names {
                #expect(sink.messages.contains("Kernel upgraded from 6.6.45 to 6.6.46 on \(n)"), "\(sink.transcript)")
                #expect(summary.kernelChanges[n] == .init(from: "6.6.45", to: "6.6.46"))
                #expect(upgraded[n]?.kernel == "6.6.46")
                #expect(upgraded[n]?.bootID != before[n]?.bootID)
                #expect(upgraded[n]?.lastResult?.outcome == .committed)
                #expect(c.sim.kube.state.node(n)?.status?.nodeInfo?.kernelVersion == "6.6.46")
            }
            #expect(c.cordoned().isEmpty)

            // Right after: nothing newer on the channel.
            let boots = try Dictionary(uniqueKeysWithValues: c.names.map { ($0, try c.sim.node($0).snapshot.boots) })
            let again = E2ESink()
            let second = try await c.rollout(.upgrade(.boot), sink: again)
            #expect(second.updated.isEmpty, "\(again.transcript)")
            #expect(second.unchanged == c.names)
            #expect(second.kernelChanges.isEmpty)
            let after = try await c.statuses()
            for n in c.names {
                #expect(again.messages.contains("No upgrade needed on \(n)"), "\(again.transcript)")
                #expect(after[n]?.bootID == upgraded[n]?.bootID, "\(n) was not rebooted")
                #expect(after[n]?.bootedGeneration == upgraded[n]?.bootedGeneration)
                #expect(after[n]?.profileGeneration == upgraded[n]?.profileGeneration, "no new generation")
                #expect(after[n]?.kernel == "6.6.46")
                #expect(try c.sim.node(n).snapshot.boots == boots[n], "\(n) did not boot again")
            }
            #expect(!again.messages.contains { $0.hasPrefix("Draining") || $0.hasPrefix("Rebooting") })
            #expect(!again.messages.contains { $0.hasPrefix("Kernel upgraded") })
            #expect(c.cordoned().isEmpty)
        }
    }
}
}
