#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NK3Protocol

// Pure helpers of the apply machine (see ApplyMachine.swift for the transitions).
extension ApplyMachine {
    /// What a revert or rollback puts back: the saved snapshot, with every bundle file it does not name saved
    /// as absent. A snapshot always names the bundle's files; one persisted by an agent before snapshots
    /// (the managed files only) does not, and the files that bundle created must still go.
    public static func restoreSet(_ a: Apply, _ base: Baseline) -> ConfigSnapshot {
        var snapshot = base.snapshot
        for name in a.bundle.files.keys where snapshot.entries[name] == nil { snapshot.entries[name] = .absent }
        return snapshot
    }

    /// The generation and mode a dead-man rollback activates: the exact previous generation recorded before the
    /// rebuild (docs/UPSTREAM.md#generations).
    public static func rollbackTarget(_ a: Apply) -> (generation: Int, mode: ActivationMode)? {
        guard let base = a.baseline else { return nil }
        if a.bundle.action == .test {
            return base.generations.generation(of: base.generations.currentSystem).map { ($0, .test) }
        }
        guard let prev = base.generations.profileGeneration else { return nil }
        return (prev, a.bootMode ? .boot : .switch)
    }

    /// After a failed or interrupted rebuild: which activation puts the machine back, if anything moved.
    /// A failed `switch|boot` can have set the profile before activation failed (docs/UPSTREAM.md#nixos-rebuild).
    public static func revertActivation(
        baseline: Baseline, action: RebuildAction, now: GenerationState
    ) -> (generation: Int, mode: ActivationMode)? {
        let before = baseline.generations
        switch action {
        case .switch, .boot:
            guard let prev = before.profileGeneration else { return nil }
            let profileMoved = now.profileGeneration != prev
            let liveMoved = action == .switch && now.currentSystem != before.currentSystem
            guard profileMoved || liveMoved else { return nil }
            return (prev, action == .boot ? .boot : .switch)
        case .test:
            guard now.currentSystem != before.currentSystem, let g = before.generation(of: before.currentSystem)
            else { return nil }
            return (g, .test)
        }
    }

    /// The tool's error text: `error:` lines (and what follows them), else the last lines.
    public static func errorText(_ output: String, maxLines: Int = 15) -> String {
        let lines = output.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        if let first = lines.firstIndex(where: {
            $0.hasPrefix("error:") || $0.contains("error: ") || $0.hasPrefix("warning: error(s) occurred")
        }) {
            return lines[first...].prefix(maxLines).joined(separator: "\n")
        }
        return lines.suffix(maxLines).joined(separator: "\n")
    }

    /// The wire view of the apply in flight.
    public var operationStatus: OperationStatus? {
        guard let a = state.apply else { return nil }
        return OperationStatus(
            id: a.id, serial: a.serial, kind: "apply", action: a.bundle.action, phase: a.phase.wire,
            startedAt: a.startedAt, deadline: a.deadline,
            previousGeneration: a.baseline.flatMap { Self.rollbackTarget(a)?.generation ?? $0.generations.profileGeneration },
            newGeneration: a.newGeneration, bootIDAtRebuild: a.bootIDAtRebuild)
    }
}
