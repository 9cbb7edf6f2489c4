import Foundation
import NK3Coordinator
import NK3Protocol
import NK3Simulation
import Testing

/// Flake mode (`flake: true`): the bundle carries flake.nix and flake.lock, the agent builds the flake, and
/// `nk3 upgrade` updates the lock once, on the first node, then ships that lock to every other node.
@Suite("E2E: flake mode (simulation)", .timeLimit(.minutes(5)))
struct E2EFlakeTests {
    static let first = SimulatedChannels.Release(nixosVersion: "24.05.4000.a1b2c3d4e5f6", kernel: "6.6.45")
    static let second = SimulatedChannels.Release(nixosVersion: "24.05.4100.f6e5d4c3b2a1", kernel: "6.6.46")
    static let newer = SimulatedChannels.Release(nixosVersion: "24.05.4200.0badc0ffee00", kernel: "6.6.47")

    /// Turns flake mode on, with a flake.lock pinned to `release` in the inventory's directory (nil: none).
    static func useFlakes(_ c: E2ECluster, lockedTo release: SimulatedChannels.Release?) throws {
        var yaml = try String(contentsOfFile: c.inventoryPath, encoding: .utf8)
        yaml += (yaml.hasSuffix("\n") ? "" : "\n") + "flake: true\n"
        try yaml.write(toFile: c.inventoryPath, atomically: true, encoding: .utf8)
        let lock = c.directory.appendingPathComponent("flake.lock").path
        if let release {
            try SimulatedChannels.flakeLock(branch: "nixos-24.05", release: release)
                .write(toFile: lock, atomically: true, encoding: .utf8)
        } else {
            try? FileManager.default.removeItem(atPath: lock)
        }
    }

    static func rev(_ r: SimulatedChannels.Release) -> String { r.channelRelease.gitRevision! }

    @Test("nk3 apply in flake mode: every node lands flake.nix and the inventory's flake.lock and builds its nixpkgs")
    func applyBuildsTheLockedNixpkgs() async throws {
        try await E2ECluster.with { c in
            try Self.useFlakes(c, lockedTo: Self.first)
            let sink = E2ESink()
            let summary = try await c.rollout(.apply(.boot), sink: sink)
            #expect(summary.updated == c.names, "\(sink.transcript)")
            for (n, s) in try await c.statuses() {
                #expect(s.flakeLock?.nixpkgsRevision == Self.rev(Self.first), "\(n)")
                #expect(s.files[FlakeLock.flakeFile] != nil, "\(n)")
                #expect(s.kernel == "6.6.45", "\(n)")
            }
        }
    }

    @Test("nk3 upgrade in flake mode: nixpkgs moves on after the first node's lock update, and every node still ends on that node's lock")
    func upgradeShipsTheLeadersLock() async throws {
        try await E2ECluster.with { c in
            try Self.useFlakes(c, lockedTo: Self.first)
            let sink = E2ESink()
            sink.onEvent { event in
                // Right after the first node updated its lock: nixpkgs moves on.
                if event.message.contains(" updated flake.lock to nixpkgs ") {
                    c.sim.channels.publish("nixos-24.05", Self.newer)
                }
            }
            let summary = try await c.rollout(.upgrade(.boot), sink: sink)
            #expect(summary.updated == c.names, "\(sink.transcript)")
            #expect(c.sim.channels.latest(SimulatedChannels.url(of: "nixos-24.05")) == Self.newer, "nixpkgs did move on")
            let leader = c.names[0]
            #expect(sink.messages.contains { $0.hasPrefix("\(leader) updated flake.lock to nixpkgs \(Self.rev(Self.second).prefix(12))") },
                    "\(sink.transcript)")
            let after = try await c.statuses()
            let leaderLock = try #require(after[leader]?.flakeLock)
            for n in c.names {
                #expect(after[n]?.flakeLock == leaderLock, "\(n) holds the leader's lock, byte for byte")
                #expect(after[n]?.flakeLock?.nixpkgsRevision == Self.rev(Self.second), "\(n): not the newer nixpkgs")
                #expect(after[n]?.kernel == "6.6.46", "\(n)")
            }
            // Only the leader updated the lock.
            let updates = try c.names.filter { try c.sim.member($0).node.snapshot.flakeLockUpdates > 0 }
            #expect(updates == [leader], "\(updates)")

            // The inventory's flake.lock is now the upgrade's lock, so the next apply changes nothing (it used to
            // ship the old lock back and take every node back to the old nixpkgs).
            let inventoryLock = try String(
                contentsOfFile: c.directory.appendingPathComponent("flake.lock").path, encoding: .utf8)
            #expect(inventoryLock == leaderLock.content, "the inventory's flake.lock is the leader's")
            #expect(sink.messages.contains { $0.contains("wrote this upgrade's flake.lock (nixpkgs \(Self.rev(Self.second).prefix(12)))") },
                    "\(sink.transcript)")
            let next = E2ESink()
            let again = try await c.rollout(.apply(.boot), sink: next)
            #expect(again.updated.isEmpty, "\(next.transcript)")
            for (n, s) in try await c.statuses() { #expect(s.kernel == "6.6.46", "\(n)") }
        }
    }

    @Test("budget 3 over three servers and two agents: the others wait for the first node's lock update, so the whole first batch gets its lock")
    func aWideFirstBatchGetsTheLeadersLock() async throws {
        try await E2ECluster.with(nodes: 5, servers: 3) { c in
            try Self.useFlakes(c, lockedTo: Self.first)
            let sink = E2ESink()
            sink.onEvent { event in
                if event.message.contains(" updated flake.lock to nixpkgs ") { c.sim.channels.publish("nixos-24.05", Self.newer) }
            }
            let summary = try await c.rollout(.upgrade(.boot), budget: 3, sink: sink)
            #expect(Set(summary.updated) == Set(c.names), "\(sink.transcript)")
            let leader = try #require(
                sink.messages.first { $0.contains(" updated flake.lock to nixpkgs ") }?.split(separator: " ").first.map(String.init),
                "\(sink.transcript)")
            let after = try await c.statuses()
            for n in c.names {
                #expect(after[n]?.flakeLock?.nixpkgsRevision == Self.rev(Self.second), "\(n): \(sink.transcript)")
                #expect(after[n]?.kernel == "6.6.46", "\(n)")
            }
            let updates = try c.names.filter { try c.sim.member($0).node.snapshot.flakeLockUpdates > 0 }
            #expect(updates == [leader], "\(updates)")
        }
    }

    @Test("flake mode without any flake.lock is refused before anything is touched: a node never locks nixpkgs by itself")
    func noLockIsRefused() async throws {
        try await E2ECluster.with { c in
            try Self.useFlakes(c, lockedTo: nil)
            let sink = E2ESink()
            do {
                let summary = try await c.rollout(.apply(.boot), sink: sink)
                Issue.record("the rollout ran: \(summary)")
            } catch {
                #expect("\(error)".contains("flake mode: no flake.lock for \(c.names.joined(separator: ", "))"), "\(error)")
            }
            for (n, s) in try await c.statuses() {
                #expect(s.flakeLock == nil, "\(n)")
                #expect(s.lastResult == nil, "\(n): nothing was sent")
            }
        }
    }

    @Test("nk3 status in flake mode: a FLAKE LOCK column with each node's locked nixpkgs, and MIXED when the locks differ")
    func statusShowsTheLocks() async throws {
        try await E2ECluster.with { c in
            try Self.useFlakes(c, lockedTo: Self.first)
            _ = try await c.rollout(.apply(.boot), sink: E2ESink())
            let session = try ClusterSession.load(inventoryPath: c.inventoryPath, overrides: c.sim.sessionOverrides, logger: E2ECluster.quiet)
            var rows = await session.probeAll().map { NodeStatusRow(probe: $0, rendered: nil, cordoned: nil) }
            for r in rows { #expect(r.flakeLock == String(Self.rev(Self.first).prefix(12)), "\(r.node)") }
            let table = StatusTable.render(rows)
            #expect(table.split(separator: "\n").first?.contains("FLAKE LOCK") == true, "\(table)")
            #expect(StatusTable.mixedFlakeLocks(rows) == nil)
            rows[0].flakeLock = "0badc0ffee00"
            #expect(StatusTable.render(rows).contains("MIXED: the nodes hold 2 flake locks (0badc0ffee00 on \(rows[0].node); "), "\(StatusTable.render(rows))")
        }
    }
}

/// The simulated node's flake evaluation, as real Nix behaves (see `SimulatedNode.flakeInputs`).
@Suite("SimulatedNode flake mode (simulation)", .timeLimit(.minutes(1)))
struct SimulatedNodeFlakeTests {
    static let flake = """
        {
          inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.05";
          outputs = { self, nixpkgs }: { nixosConfigurations."node1" = nixpkgs.lib.nixosSystem { modules = [ ./configuration.nix ]; }; };
        }
        """

    func node(lock: SimulatedChannels.Release?) async throws -> SimulatedNode {
        let n = try SimulatedNode(
            hostname: "node1", files: SimulatedNodeTests.files, unmanagedFiles: [:], channelURL: SimulatedNodeTests.channel,
            speed: .instant, logger: SimulatedNodeTests.quiet)
        var files = SimulatedNodeTests.files
        files["flake.nix"] = Self.flake
        if let lock { files["flake.lock"] = SimulatedChannels.flakeLock(branch: "nixos-24.05", release: lock) }
        try await n.replaceConfigFiles(with: files)
        return n
    }

    @Test("the locked revision is built; without a lock Nix locks the newest nixpkgs in memory and only warns")
    func lockedAndUnlocked() async throws {
        let locked = try await node(lock: E2EFlakeTests.first)
        let out = try await locked.rebuild(.boot, upgrade: false, flake: "node1") { _ in }
        #expect(out.exitCode == 0, "\(out.output)")
        #expect(try await locked.generations().profileSystem?.hasSuffix("24.05.4000.a1b2c3d4e5f6") == true)

        let unlocked = try await node(lock: nil)
        let o2 = try await unlocked.rebuild(.boot, upgrade: false, flake: "node1") { _ in }
        #expect(o2.exitCode == 0)
        #expect(o2.output.contains("warning: not writing modified lock file of flake 'path:/etc/nixos':"), "\(o2.output)")
        #expect(try await unlocked.generations().profileSystem?.hasSuffix("24.05.4100.f6e5d4c3b2a1") == true, "the newest")
        #expect(try await unlocked.readConfigFiles()["flake.lock"] == nil, "nothing written")
    }

    @Test("upgrade writes the newest lock; an unknown revision, a missing attribute or a missing flake.nix fail as Nix does")
    func upgradeAndFailures() async throws {
        let n = try await node(lock: E2EFlakeTests.first)
        let up = try await n.rebuild(.boot, upgrade: true, flake: "node1") { _ in }
        #expect(up.exitCode == 0)
        #expect(try await n.readConfigFiles()["flake.lock"].flatMap { FlakeLock.locked($0)?.revision } == E2EFlakeTests.rev(E2EFlakeTests.second))
        #expect(n.snapshot.flakeLockUpdates == 1)

        let other = try await n.rebuild(.boot, upgrade: false, flake: "node2") { _ in }
        #expect(other.exitCode == 1)
        #expect(other.output.contains("does not provide attribute"), "\(other.output)")

        var files = try await n.readConfigFiles()
        files["flake.lock"] = SimulatedChannels.flakeLock(branch: "nixos-24.05", release: E2EFlakeTests.newer)
        try await n.replaceConfigFiles(with: files)
        let unknown = try await n.rebuild(.boot, upgrade: false, flake: "node1") { _ in }
        #expect(unknown.exitCode == 1)
        #expect(unknown.output.contains("HTTP error 404"), "\(unknown.output)")

        files["flake.nix"] = nil
        try await n.replaceConfigFiles(with: files)
        let none = try await n.rebuild(.boot, upgrade: false, flake: "node1") { _ in }
        #expect(none.exitCode == 1)
        #expect(none.output.contains("does not contain a '/flake.nix' file"))
    }
}
