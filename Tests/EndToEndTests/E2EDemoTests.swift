import Foundation
import Logging
import NK3Coordinator
import NK3Simulation
import Synchronization
import Testing

/// `nk3 demo` end to end, as a newcomer runs it (instant speed, 3 nodes).
extension E2E {
@Suite("E2E: nk3 demo (simulation)", .timeLimit(.minutes(2)))
struct E2EDemoTests {
    @Test("DemoRunner finishes: [simulation] framing, the template diff line, kernel upgrades, everything in sync")
    func demoSmoke() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nk3-e2e-demo-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: dir) }
        var options = DemoRunner.Options()
        options.nodes = 3
        options.speed = .instant
        options.directory = dir
        let out = Mutex<[String]>([])
        let err = Mutex<[String]>([])
        let demo = DemoRunner(
            options: options, out: { l in out.withLock { $0.append(l) } }, err: { l in err.withLock { $0.append(l) } },
            logger: E2ECluster.quiet)
        let cluster = try await demo.run()
        #expect(cluster == nil, "not kept running")
        let lines = out.withLock { $0 }
        let text = lines.joined(separator: "\n")
        #expect(err.withLock { $0 }.isEmpty, "\(err.withLock { $0 })")
        #expect(lines.first?.hasPrefix("[simulation] nk3 demo — a SIMULATION") == true, "\(lines.prefix(3))")
        #expect(lines.contains { $0.hasPrefix("[simulation]") && $0.contains("simulated NixOS nodes") })
        // The diff is one event of several lines; the added line is one of them.
        #expect(text.components(separatedBy: "\n").contains("+  hardware.cpu.amd.updateMicrocode = true;"), "\(text)")
        for n in 1...3 {
            #expect(lines.contains("Kernel upgraded from 6.6.45 to 6.6.46 on sim-node-\(n)"), "\(text)")
        }
        #expect(lines.contains("[simulation] apply: 3 node(s) updated, 0 unchanged"))
        #expect(lines.contains("[simulation] upgrade: 3 node(s) upgraded, 3 kernel change(s)"))
        #expect(lines.contains { $0.hasPrefix("[simulation] demo finished in") })
        // The closing status table: every node on the new kernel, configuration in sync, committed.
        let rows = lines.filter { $0.hasPrefix("sim-node-") }.suffix(3)
        #expect(rows.count == 3)
        for r in rows {
            #expect(r.contains("6.6.46") && r.contains("in sync") && r.contains("committed"), "\(r)")
        }
        // Every line is either narration framed as a simulation, a command banner, or the coordinator's own output.
        #expect(!lines.contains { $0.hasPrefix("nk3 demo") })
    }

    @Test("the demo rolls through the same options builder as `nk3 apply`: the inventory's order (servers first here)")
    func demoUsesTheApplyPath() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nk3-e2e-demo-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: dir) }
        var options = DemoRunner.Options()
        options.nodes = 4
        options.servers = 3
        options.speed = .instant
        options.directory = dir
        options.upgrade = false
        let out = Mutex<[String]>([])
        let demo = DemoRunner(options: options, out: { l in out.withLock { $0.append(l) } }, err: { _ in }, logger: E2ECluster.quiet)
        _ = try await demo.run()
        let rebuilt = out.withLock { $0 }.filter { $0.hasPrefix("Rebuilding NixOS on ") }
        // `nk3 apply` takes the inventory's rollout order (sim-node-1 … 4); the old demo path put the agent first.
        #expect(rebuilt == (1...4).map { "Rebuilding NixOS on sim-node-\($0)" }, "\(rebuilt)")
    }
}
}
