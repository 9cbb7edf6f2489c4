import Foundation

/// Everything a rollout tells the operator in words: failure messages written from a failure's
/// `RolloutFailure.Situation`, the causes of timeouts, and the Python tool's progress lines. The rollout
/// machine deals in facts (steps, nodes, serials, durations); the wording, and the CLI flags and commands a
/// message points to, live here.
public enum RolloutMessages {
    // MARK: - Failures

    /// The message of `failure`, written from `situation`.
    static func message(for failure: RolloutFailure, in situation: RolloutFailure.Situation) -> String {
        let cause = failure.cause
        switch situation {
        case .invalidPlan:
            return "invalid rollout: \(cause)"
        case .agentsUnreachable(let nodes):
            return "rollout not started: agent unreachable on \(nodes.joined(separator: ", ")). Every agent must "
                + "answer before a rollout starts; check that nk3-agent runs on the node and that its port is open, "
                + "then rerun."
        case .quorumAtRisk:
            return "rollout not started: \(cause). Add servers (an odd number, 3 or more), or pass "
                + "--allow-quorum-loss to roll servers one at a time anyway."
        case .drainBlocked(let blockers):
            let lines = blockers.map { "\($0.node): \($0.pod): \($0.reason)" }
            var message = "rollout not started, nothing was changed: \(blockers.count) pod(s) would stop a drain:\n  "
                + lines.joined(separator: "\n  ")
                + "\nFix them (give the pod a controller, relax the budget or add replicas), or pass "
                + "--skip-drain-preflight to meet them node by node."
            if blockers.contains(where: { $0.source == .apiDryRun }) {
                message += " The API server's dry-run refusals are the cluster's state now: rerun once the budget's "
                    + "pods are healthy again."
            }
            return message
        case .agentRollingBack(let serial):
            let node = failure.node ?? "?"
            return "rollout not started: the agent on \(node) is rolling back apply \(serial) (its confirm deadline "
                + "passed while no coordinator was running). Rerun nk3 once the rollback finished (`nk3 status` "
                + "shows it)."
        case .nodeFailed(let after):
            let name = failure.node ?? "?"
            var message = "rollout aborted: \(name) failed during \(failure.step?.rawValue ?? "?"): \(cause)."
            if failure.kind == .rebuildFailed {
                message += " Its agent restored the previous configuration; \(name) was not drained."
            } else if let serial = after.unconfirmedSerial {
                message += " nk3 did not confirm apply \(serial): the agent on \(name) rolls back to the previous "
                    + "generation by itself when its confirm deadline passes."
            }
            if after.leftCordoned {
                message += " \(name) stays cordoned (nk3's annotation records why); fix the cause and rerun nk3 to "
                    + "bring it back and continue."
            }
            if !after.alsoInFlight.isEmpty {
                message += " Also in flight: \(after.alsoInFlight.joined(separator: ", ")) (unconfirmed changes roll "
                    + "back the same way)."
            }
            return message
        case .gatesFailed(let waiting, let updated):
            var message = "rollout aborted during gates: \(cause)."
            if !waiting.isEmpty {
                return message + " Waiting on the gates: \(waiting.joined(separator: ", ")); nk3 did not confirm "
                    + "them, so their agents roll back unconfirmed changes at the confirm deadline."
            }
            message += " No node was touched" + (updated.isEmpty ? "." : " after \(updated.joined(separator: ", ")).")
            return message
        case .internalError:
            return RolloutFailure.defaultMessage(node: failure.node, step: failure.step, cause: cause)
        }
    }

    /// The cause of a quorum refusal.
    static func quorumCause(server: String, servers: Int) -> String {
        "k3s server \(server) needs a restart, but with \(servers) server(s) etcd keeps quorum only while "
            + "⌊(\(servers)−1)/2⌋ = 0 servers are down (https://docs.k3s.io/datastore/ha-embedded)"
    }

    /// The cause of an agent found rolling back at the start.
    static func rollingBackCause(serial: UInt64) -> String {
        "its agent is rolling back apply \(serial) (the confirm deadline passed while no coordinator was running)"
    }

    /// The cause of a wait that ran out at `step` after `after`. `sawOldBootID`: the last look at a rebooted
    /// node found its agent answering with the old boot id.
    /// `trialBoot`: the node rebooted into a trial boot (docs/RELIABILITY.md#trial-boot).
    static func timeoutCause(step: RolloutStep, after: Duration, sawOldBootID: Bool, trialBoot: Bool = false) -> String {
        let d = RolloutDurations.describe(after)
        switch step {
        case .rebuild: return "nixos-rebuild did not finish within \(d)"
        case .drain: return "draining did not finish within \(d)"
        case .waitReachable:
            if sawOldBootID { return "its agent kept answering with the old boot id for \(d): the reboot did not happen" }
            if trialBoot {
                return "it did not come back within \(d) of the reboot; the next reset boots the previous generation "
                    + "(the new one was booted once, on trial; rerun nk3 once the node is back)"
            }
            return "its agent did not come back within \(d) of the reboot"
        case .waitReady: return "kubelet did not become Ready within \(d)"
        case .gates: return "the health gates did not all pass within \(d)"
        case .send, .reboot, .uncordon, .confirm: return "\(step.rawValue) did not finish within \(d)"
        }
    }

    /// The cause of a Ready wait that ended with the Kubernetes API failing the last check.
    static func notReadyCause(after: Duration, apiFailure: String) -> String {
        "kubelet did not become Ready within \(RolloutDurations.describe(after)): the Kubernetes API failed the "
            + "last check: \(apiFailure)"
    }

    /// The cause of a Ready wait that ended with the API still showing the node's status from before the reboot.
    static func notReadyCause(after: Duration, staleBootID: String?, bootID: String) -> String {
        "kubelet did not become Ready within \(RolloutDurations.describe(after)) of the reboot: the Kubernetes API "
            + "still shows the node as it was before it (boot id \(staleBootID ?? "not reported"), not \(bootID)), so "
            + "the kubelet of the new boot never reported"
    }

    /// The cause of a failed `nixos-rebuild`.
    static func rebuildFailedCause(_ message: String) -> String { "nixos-rebuild failed: \(message)" }

    /// The cause of an apply the agent rolled back while rebuilding.
    static func rolledBackCause(_ message: String) -> String { "the agent rolled back: \(message)" }

    /// The cause of a node that came back in its previous generation.
    static func cameBackRolledBackCause(serial: UInt64, message: String) -> String {
        "it came back in its previous generation: the agent rolled back apply \(serial) (\(message))"
    }

    // MARK: - Progress lines (the Python tool's where it had one)

    /// "Rebuilding NixOS on X".
    static func rebuilding(_ node: String) -> RolloutNotice {
        RolloutNotice(node: node, phase: .rebuild, status: .started, message: "Rebuilding NixOS on \(node)")
    }

    /// "Draining X".
    static func draining(_ node: String) -> RolloutNotice {
        RolloutNotice(node: node, phase: .drain, status: .started, message: "Draining \(node)")
    }

    /// "Rebooting X".
    static func rebooting(_ node: String) -> RolloutNotice {
        RolloutNotice(node: node, phase: .reboot, status: .started, message: "Rebooting \(node)")
    }

    /// "X is reachable" (back after its reboot).
    static func reachable(_ node: String) -> RolloutNotice {
        RolloutNotice(node: node, phase: .reachable, status: .ok, message: "\(node) is reachable")
    }

    /// "kubelet is ready on X".
    static func kubeletReady(_ node: String) -> RolloutNotice {
        RolloutNotice(node: node, phase: .ready, status: .ok, message: "kubelet is ready on \(node)")
    }

    /// Ready=True in the API, but from before the reboot: nk3 waits for the new boot's kubelet.
    static func readyFromPreviousBoot(_ node: String, apiBootID: String?, bootID: String) -> RolloutNotice {
        RolloutNotice(
            node: node, phase: .ready, status: .waiting,
            message: "\(node) shows Ready from before its reboot (boot id \(apiBootID ?? "not reported"), now "
                + "\(bootID)): waiting for the kubelet of the new boot")
    }

    /// "X uncordoned", or why it was left cordoned.
    static func uncordoned(_ node: String, wasOurs: Bool) -> RolloutNotice {
        if wasOurs { return RolloutNotice(node: node, phase: .uncordon, status: .ok, message: "\(node) uncordoned") }
        return RolloutNotice(
            node: node, phase: .uncordon, status: .warning,
            message: "\(node) was cordoned by someone else before nk3 drained it; left cordoned")
    }

    /// "No action needed on X" / "No upgrade needed on X".
    static func noAction(_ node: String, upgrade: Bool) -> RolloutNotice {
        RolloutNotice(
            node: node, phase: .rollout, status: .skipped,
            message: upgrade ? "No upgrade needed on \(node)" : "No action needed on \(node)")
    }

    /// A node an interrupted run of the same plan finished.
    static func finishedEarlier(_ node: String) -> RolloutNotice {
        RolloutNotice(
            node: node, phase: .rollout, status: .skipped,
            message: "\(node) was finished by the interrupted rollout; skipping")
    }

    /// A node nk3 left cordoned, brought back first.
    static func leftCordoned(_ node: String, reason: String?) -> RolloutNotice {
        RolloutNotice(
            node: node, phase: .rollout, status: .warning,
            message: "\(node) was left cordoned by nk3\(reason.map { " (\($0))" } ?? ""); bringing it back")
    }

    /// A node resumed at `step` (nil: at its end).
    static func resuming(_ node: String, at step: RolloutStep?) -> RolloutNotice {
        RolloutNotice(
            node: node, phase: .rollout, status: .info, message: "Resuming \(node) at \(step?.rawValue ?? "the end")")
    }

    /// A node someone else cordoned, left alone.
    static func skippingCordoned(_ node: String, by who: String) -> RolloutNotice {
        RolloutNotice(
            node: node, phase: .preflight, status: .warning,
            message: "\(node) is cordoned by someone else\(who.isEmpty ? "" : " (\(who))"), not by nk3: skipping it "
                + "(nk3 does not drain and reboot it behind their back; --include-cordoned rolls it and leaves it cordoned)")
    }

    /// The nodes skipped for someone else's cordon, named again at the end.
    static func skippedCordoned(_ nodes: [String]) -> RolloutNotice {
        RolloutNotice(
            node: nil, phase: .rollout, status: .warning,
            message: "Skipped \(nodes.count) node(s) cordoned by someone else: \(nodes.joined(separator: ", ")); uncordon "
                + "them and rerun, or rerun with --include-cordoned")
    }

    /// Servers rolled although etcd loses quorum while one is down.
    static func quorumLossAllowed(servers: Int) -> RolloutNotice {
        RolloutNotice(
            node: nil, phase: .preflight, status: .warning,
            message: "Rolling k3s servers with --allow-quorum-loss: with \(servers) server(s), etcd loses quorum "
                + "while one is down")
    }

    /// The coordinator confirmed the node's apply: its agent keeps the new generation (nk3's own line, after
    /// the gates; the Python tool had no confirm).
    static func confirmed(_ node: String, serial: UInt64?) -> RolloutNotice {
        RolloutNotice(
            node: node, phase: .confirm, status: .ok,
            message: "Confirmed \(serial.map { "apply \($0)" } ?? "the apply") on \(node): its agent keeps the new generation")
    }

    /// "Kernel upgraded from A to B on X" (the Python tool's line).
    static func kernelUpgraded(_ node: String, from: String, to: String) -> RolloutNotice {
        RolloutNotice(node: node, phase: .rollout, status: .ok, message: "Kernel upgraded from \(from) to \(to) on \(node)")
    }

    /// The last line of a rollout that finished.
    static func complete(_ summary: RolloutSummary) -> RolloutNotice {
        RolloutNotice(
            node: nil, phase: .rollout, status: .ok,
            message: "Rollout complete: \(summary.updated.count) updated, \(summary.unchanged.count) unchanged"
                + (summary.alreadyDone.isEmpty ? "" : ", \(summary.alreadyDone.count) already done"))
    }

    /// A failure, as the line that reports it (a stop outside the maintenance window on the window's phase).
    static func failed(_ failure: RolloutFailure) -> RolloutNotice {
        let phase = failure.kind == .outsideWindow ? .window : failure.step?.phase ?? .rollout
        return RolloutNotice(node: failure.node, phase: phase, status: .failed, message: failure.message)
    }

    /// A start was refused (`cause`) while `inFlight` were in flight: they finish, no other node starts.
    static func stoppingAfter(_ inFlight: [String], cause: String) -> RolloutNotice {
        RolloutNotice(
            node: nil, phase: .rollout, status: .warning,
            message: "Stopping between nodes (\(cause)): no further node starts; waiting for \(inFlight.joined(separator: ", ")) "
                + "in flight to finish")
    }
}

/// Human-readable durations for messages ("10m", "1m30s", "250ms").
public enum RolloutDurations {
    /// Formats `d` compactly.
    public static func describe(_ d: Duration) -> String {
        let (s, atto) = d.components
        let ms = s * 1000 + atto / 1_000_000_000_000_000
        if ms < 1000 { return "\(ms)ms" }
        if ms % 1000 != 0 && ms < 60_000 { return String(format: "%.1fs", Double(ms) / 1000) }
        let total = ms / 1000
        let h = total / 3600, m = (total % 3600) / 60, sec = total % 60
        var out = ""
        if h > 0 { out += "\(h)h" }
        if m > 0 { out += "\(m)m" }
        if sec > 0 || out.isEmpty { out += "\(sec)s" }
        return out
    }
}
