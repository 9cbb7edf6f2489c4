import Foundation
import NK3Coordinator
import NK3Protocol
import NK3Simulation
import Testing

/// One nixpkgs release per upgrade: the channel moves on while the rollout runs (a new release is published
/// right after the first node fetched it), and the later nodes still get the first node's release.
@Suite("E2E: one nixpkgs release per upgrade (simulation)", .timeLimit(.minutes(5)))
struct E2EChannelPinTests {
    static let newer = SimulatedChannels.Release(nixosVersion: "24.05.4200.0badc0ffee00", kernel: "6.6.47")

    /// Points the inventory at a channel that is not on nixos.org, publishing the same two releases as nixos-24.05.
    static func useMirror(_ c: E2ECluster) throws -> String {
        let mirror = "https://mirror.example.org/nixos-24.05"
        c.sim.channels.publish(mirror, SimulatedChannels.Release(nixosVersion: "24.05.4000.a1b2c3d4e5f6", kernel: "6.6.45"))
        c.sim.channels.publish(mirror, SimulatedChannels.Release(nixosVersion: "24.05.4100.f6e5d4c3b2a1", kernel: "6.6.46"))
        try c.setInventoryChannel(mirror)
        return mirror
    }

    @Test("the channel publishes a newer release mid-rollout: every node ends on the release the first node fetched, pinned by its fixed URL")
    func laterNodesGetTheFirstNodesRelease() async throws {
        try await E2ECluster.with { c in
            let sink = E2ESink()
            let channelURL = SimulatedChannels.url(of: "nixos-24.05")
            sink.onEvent { event in
                // Right after the first node's rebuild fetched the channel: the channel moves on.
                if event.message.contains(" fetched nixos-24.05.4100.f6e5d4c3b2a1") {
                    c.sim.channels.publish("nixos-24.05", Self.newer)
                }
            }
            let summary = try await c.rollout(.upgrade(.boot), sink: sink)
            #expect(summary.updated == c.names, "\(sink.transcript)")
            #expect(c.sim.channels.latest(channelURL) == Self.newer, "the channel did move on")
            let first = c.names[0]
            #expect(sink.messages.contains {
                $0.hasPrefix("\(first) fetched nixos-24.05.4100.f6e5d4c3b2a1 (nixpkgs f6e5d4c3b2a1)")
                    && $0.contains("https://releases.nixos.org/nixos/24.05/nixos-24.05.4100.f6e5d4c3b2a1")
            }, "\(sink.transcript)")
            let after = try await c.statuses()
            for n in c.names {
                #expect(after[n]?.kernel == "6.6.46", "\(n) is on the first node's release, not 6.6.47")
                #expect(after[n]?.channelRelease?.name == "nixos-24.05.4100.f6e5d4c3b2a1", "\(n)")
                #expect(after[n]?.nixosVersion?.hasPrefix("24.05.4100.") == true, "\(n)")
            }
            #expect(after[first]?.channel == channelURL, "the first node keeps the channel")
            for n in c.names.dropFirst() {
                #expect(after[n]?.channel == "https://releases.nixos.org/nixos/24.05/nixos-24.05.4100.f6e5d4c3b2a1")
            }
        }
    }

    @Test("budget 3 over three servers and two agents: the others wait for the first node's fetch, so the whole first batch is pinned too")
    func aWideFirstBatchIsPinnedToo() async throws {
        try await E2ECluster.with(nodes: 5, servers: 3) { c in
            let sink = E2ESink()
            sink.onEvent { event in
                if event.message.contains(" fetched nixos-24.05.4100.f6e5d4c3b2a1") {
                    c.sim.channels.publish("nixos-24.05", Self.newer)
                }
            }
            let summary = try await c.rollout(.upgrade(.boot), budget: 3, sink: sink)
            #expect(Set(summary.updated) == Set(c.names), "\(sink.transcript)")
            let leader = try #require(
                sink.messages.first { $0.contains(" fetched nixos-24.05.4100.f6e5d4c3b2a1") }?.split(separator: " ").first.map(String.init),
                "\(sink.transcript)")
            let after = try await c.statuses()
            for n in c.names {
                #expect(after[n]?.kernel == "6.6.46", "\(n) is on the leader's release, not 6.6.47: \(sink.transcript)")
                #expect(after[n]?.channelRelease?.name == "nixos-24.05.4100.f6e5d4c3b2a1", "\(n)")
            }
            for n in c.names where n != leader {
                #expect(after[n]?.channel == "https://releases.nixos.org/nixos/24.05/nixos-24.05.4100.f6e5d4c3b2a1", "\(n)")
            }
        }
    }

    @Test("a channel that is not on nixos.org cannot be pinned: the rollout says so once and goes on")
    func unpinnableChannelWarns() async throws {
        try await E2ECluster.with { c in
            let mirror = try Self.useMirror(c)
            let sink = E2ESink()
            let summary = try await c.rollout(.upgrade(.boot), sink: sink)
            #expect(summary.updated == c.names, "\(sink.transcript)")
            let warnings = sink.events.filter { $0.status == .warning && $0.message.hasPrefix("cannot pin this upgrade") }
            #expect(warnings.count == 1, "\(sink.transcript)")
            #expect(warnings.first?.message.contains("is not a NixOS channel on nixos.org") == true)
            for (_, s) in try await c.statuses() { #expect(s.channel == mirror) }
        }
    }

    @Test("unpinned, the channel moving mid-rollout leaves the cluster on two releases: nk3 status says MIXED and names them")
    func statusFlagsMixedReleases() async throws {
        try await E2ECluster.with { c in
            let mirror = try Self.useMirror(c)
            let sink = E2ESink()
            sink.onEvent { event in
                if event.status == .warning, event.message.hasPrefix("cannot pin this upgrade") {
                    c.sim.channels.publish(mirror, Self.newer)
                }
            }
            _ = try await c.rollout(.upgrade(.boot), sink: sink)
            let session = try ClusterSession.load(
                inventoryPath: c.inventoryPath, overrides: c.sim.sessionOverrides, logger: E2ECluster.quiet)
            let rows = await session.probeAll().map { NodeStatusRow(probe: $0, rendered: nil, cordoned: nil) }
            let first = c.names[0]
            #expect(rows.first { $0.node == first }?.nixpkgs == "24.05.4100.f6e5d4c3b2a1")
            for n in c.names.dropFirst() { #expect(rows.first { $0.node == n }?.nixpkgs == "24.05.4200.0badc0ffee00") }
            let table = StatusTable.render(rows)
            #expect(table.contains("MIXED: the nodes run 2 nixpkgs releases (24.05.4100.f6e5d4c3b2a1 on \(first); "
                + "24.05.4200.0badc0ffee00 on \(c.names.dropFirst().joined(separator: ", ")))"), "\(table)")
            #expect(StatusTable.mixedReleases(rows.filter { $0.node != first }) == nil)
        }
    }
}
