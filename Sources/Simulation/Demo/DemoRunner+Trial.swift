import Foundation
import NK3Coordinator
import NK3Protocol

// `nk3 demo --trial`: a change whose kernel never boots on the second node (a SIMULATED fault), rolled with a
// trial boot (docs/RELIABILITY.md#trial-boot): the rollout stops there (exit 3), the node's reset boots the
// previous generation, its agent reports rolled_back, and a rerun of the same change stops with exit 6.
extension DemoRunner {
    /// The line the trial step adds to the template.
    public static let trialLine = "  boot.kernelParams = [ \"panic=10\" ];"

    func trialStep(cluster: SimulatedCluster, sink: any RolloutEventSink) async throws {
        let inventory = cluster.inventoryPath
        guard cluster.members.count >= 2 else {
            note("trial boot step skipped: it needs at least 2 nodes")
            return
        }
        let victim = cluster.members[1].name
        let dir = URL(fileURLWithPath: inventory).deletingLastPathComponent()
        let templatePath = dir.appendingPathComponent("template.nix.j2").path
        let template = try String(contentsOfFile: templatePath, encoding: .utf8)
        let anchor = "  boot.kernelModules = [ \"rbd\" ];\n"
        try template.replacingOccurrences(of: anchor, with: anchor + Self.trialLine + "\n")
            .write(toFile: templatePath, atomically: true, encoding: .utf8)
        try await cluster.inject(.kernelDoesNotBoot, on: victim)
        note("")
        note("edited \(templatePath): added `\(Self.trialLine.trimmingCharacters(in: .whitespaces))`")
        note("injected fault on \(victim): the kernel it builds from now on never boots (trial boot: GRUB boots it once)")
        banner("$ nk3 apply -i \(inventory)")
        do {
            _ = try await rollout(.apply(.boot), inventory: inventory, overrides: cluster.sessionOverrides, sink: sink)
            note("unexpected: the rollout succeeded")
        } catch let failure as RolloutFailure {
            note("apply stopped with exit \(failure.exitCode), as it should: \(failure.message)")
        }
        note("\(victim) hangs in its new kernel; a reset (watchdog, panic=N) boots the boot loader's default entry")
        try await cluster.clear(.kernelDoesNotBoot, on: victim)
        let client = try cluster.agentClient(for: victim)
        var last: AgentStatus?
        for _ in 0..<400 {
            last = try? await client.status()
            if last?.lastResult?.outcome == .rolledBack, last?.operation == nil { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        if let r = last?.lastResult, r.outcome == .rolledBack {
            note("\(victim) is back on generation \(last?.bootedGeneration.map(String.init) ?? "?"): \(r.message)")
        } else {
            note("\(victim) did not report rolled_back yet (last: \(last?.lastResult?.outcome.rawValue ?? "none"))")
        }
        banner("$ nk3 apply -i \(inventory)   (the same change again)")
        do {
            _ = try await rollout(.apply(.boot), inventory: inventory, overrides: cluster.sessionOverrides, sink: sink)
        } catch let failure as RolloutFailure {
            note("apply stopped with exit \(failure.exitCode): \(failure.message)")
        }
        // Put the template back, so `--keep-running` leaves a cluster whose inventory renders what runs.
        try template.write(toFile: templatePath, atomically: true, encoding: .utf8)
    }
}
