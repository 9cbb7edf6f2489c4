import Foundation
import NK3Protocol

/// What a rollout finds on each node at its start — the agent's status, nk3's cordon, the progress a killed
/// run saved — and what it does with the node: roll it, skip it, resume it where it was, or bring it back
/// first. Every resumed node runs a suffix of its `NodePipeline`.
extension RolloutMachine {
    enum Classified {
        case unreachable, blocked(RolloutFailure), unchanged, alreadyDone, pending, run(NodeRun)
    }

    func classify(_ node: RolloutPlan.Node, _ s: Start, sameRun: Bool) -> Classified {
        let name = node.name
        let rec = s.progress?.inFlight[name]
        let cordoned = s.cordonedByNK3[name] != nil
        let full = NodePipeline.full(kind: plan.kind, action: node.bundle?.action)
        var run = NodeRun(node: node)
        run.applySerial = rec?.applySerial
        run.operationID = rec?.operationID
        run.bootIDBeforeReboot = rec?.bootIDBeforeReboot
        run.kernelBefore = rec?.kernelBefore
        /// Back from the reboot (or activated live): Ready, uncordon if nk3's cordon is on, gates, confirm.
        func afterReboot(ships: Bool, reboots: Bool) -> [RolloutStep] {
            NodePipeline(ships: ships, reboots: reboots, uncordons: cordoned).steps(from: .waitReady)
        }

        guard let status = s.statuses[name] else {
            // Unreachable is expected only for a node nk3 was rebooting when the last run died.
            if let rec, [.reboot, .waitReachable].contains(rec.step) {
                run.steps = full.steps(from: .waitReachable)
                run.inDisruption = true
                return .run(run)
            }
            return .unreachable
        }

        // 1. An apply of ours is still open on the agent: pick it up where it is.
        if plan.kind == .apply, let bundle = node.bundle, let op = status.operation, op.kind == "apply",
            rec?.applySerial == op.serial || status.configHash == node.desiredHash
        {
            run.applySerial = op.serial
            run.operationID = op.id
            run.action = op.action ?? bundle.action
            switch op.phase {
            case .received, .staged, .rebuilding:
                run.steps = full.steps(from: .rebuild)
                if run.isDisruptive(.rebuild) { run.inDisruption = true }
                return .run(run)
            case .awaitingConfirm:
                if run.action == .boot {
                    let before = op.bootIDAtRebuild ?? rec?.bootIDBeforeReboot
                    if let before, status.isBootIDKnown, status.bootID != before {
                        run.bootIDBeforeReboot = before
                        run.kernelAfter = status.kernel
                        run.bootAfterReboot = NodeBoot(bootID: status.bootID, since: s.at)
                        run.steps = afterReboot(ships: true, reboots: true)
                        run.inDisruption = true
                    } else if let pending = status.pendingReboot, pending.bootID == status.bootID {
                        // The killed run's reboot was accepted and is about to happen: wait for the new boot
                        // rather than drain and reboot again under a machine that is going down.
                        run.bootIDBeforeReboot = status.bootID
                        run.steps = full.steps(from: .waitReachable)
                        run.inDisruption = true
                    } else {
                        run.steps = full.steps(from: .drain)
                        run.inDisruption = cordoned
                    }
                } else {
                    run.steps = afterReboot(ships: true, reboots: false)
                    run.inDisruption = true
                }
                return .run(run)
            case .rollingBack:
                return .blocked(
                    RolloutFailure(
                        kind: .rolledBack, node: name, step: rec?.step,
                        cause: RolloutMessages.rollingBackCause(serial: op.serial),
                        situation: .agentRollingBack(serial: op.serial)))
            case .committed, .failed, .rolledBack:
                break
            }
        }

        // 1b. The node did not come back from the reboot into this same plan's change, and its agent has since
        // rolled that change back (a trial boot that fell back to the previous generation at the next reset):
        // rolling the same change again would repeat it. Stop and say so (exit 6); a changed plan (another
        // fingerprint) is rolled as usual, and so is a node that failed later (e.g. a cut link before the confirm).
        if plan.kind == .apply, sameRun, let rec, [.reboot, .waitReachable].contains(rec.step),
            let serial = rec.applySerial, status.operation == nil, let last = status.lastResult, last.serial == serial,
            last.outcome == .rolledBack
        {
            return .blocked(
                RolloutFailure(
                    kind: .rolledBack, node: name, step: rec.step,
                    cause: RolloutMessages.cameBackRolledBackCause(serial: serial, message: last.message),
                    situation: .nodeFailed(.init(unconfirmedSerial: nil, leftCordoned: cordoned, alsoInFlight: []))))
        }

        // 2. What counts as done now.
        var after: NodeRun.After = .pending
        if let rec, let serial = rec.applySerial, let last = status.lastResult, last.serial == serial,
            last.outcome == .committed || last.outcome == .unchanged
        {
            after = .alreadyDone
        } else if sameRun, let h = s.progress?.done[name], node.desiredHash == nil || status.configHash == h {
            after = .alreadyDone
        } else if plan.kind == .apply, let b = node.bundle, !b.upgrade, status.configHash == node.desiredHash {
            after = .unchanged
        }

        // 3. A reboot rollout killed mid-node.
        if plan.kind == .reboot, let rec, after == .pending {
            if let before = rec.bootIDBeforeReboot, status.isBootIDKnown, status.bootID != before {
                run.kernelAfter = status.kernel
                run.bootAfterReboot = NodeBoot(bootID: status.bootID, since: s.at)
                run.steps = afterReboot(ships: false, reboots: true)
                run.inDisruption = true
                return .run(run)
            }
            if let pending = status.pendingReboot, pending.bootID == status.bootID,
                [.reboot, .waitReachable].contains(rec.step)
            {
                run.bootIDBeforeReboot = status.bootID  // accepted, about to go down: wait for the new boot
                run.steps = full.steps(from: .waitReachable)
                run.inDisruption = true
                return .run(run)
            }
            if [.drain, .reboot, .waitReachable].contains(rec.step), cordoned {
                run.steps = full.steps(from: .drain)
                run.inDisruption = true
                return .run(run)
            }
        }

        // 4. Left cordoned by nk3 (killed or failed run): bring it back first, never uncordoned before Ready.
        if cordoned {
            run.steps = NodePipeline.recovery.steps
            run.recovering = true
            run.inDisruption = true
            run.after = after
            return .run(run)
        }
        switch after {
        case .pending, .finish: return .pending
        case .unchanged: return .unchanged
        case .alreadyDone: return .alreadyDone
        }
    }
}
