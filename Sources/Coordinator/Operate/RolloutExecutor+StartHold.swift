import Foundation

/// The executor's start-of-node point: a node about to start waits here while `NodeStartPolicy` says no.
extension RolloutExecutor {
    /// Whether `action` starts a node (its first step of this run): the bundle is sent, or — in a reboot
    /// rollout, which sends none — the drain begins, of a node the machine started afresh (`fresh`; a resumed
    /// node is in flight already and finishes). `started` remembers the nodes seen.
    func startsNode(
        _ action: RolloutMachine.Action, kind: RolloutPlan.Kind, fresh: (String) -> Bool, started: inout Set<String>
    ) -> String? {
        let node: String
        switch action {
        case .sendBundle(let n, _): node = n
        case .drain(let n) where kind == .reboot: node = n
        default: return nil
        }
        guard fresh(node) else { return nil }
        return started.insert(node).inserted ? node : nil
    }

    /// Waits until `node` may start under `policy`, telling the operator once per reason why it waits and
    /// until when. Returns nil when it may start; under `--no-wait` with the window closed, returns at once the
    /// `RolloutFailure` (`.outsideWindow`, exit 9) the rollout stops with — the machine stops between nodes,
    /// letting the nodes in flight finish (`RolloutMachine.Input.startRefused`).
    func awaitStart(_ node: String, policy: NodeStartPolicy, resumes phase: RolloutPhase) async throws -> RolloutFailure? {
        var held = false
        var lastSaid: NodeStartPolicy.Decision?
        while true {
            var decision = policy.windowDecision(at: now())
            if decision == .go, let ask = policy.blockingAlerts {
                let answer: Result<[String], any Error>
                do { answer = .success(try await ask()) } catch {
                    try Task.checkCancellation()
                    answer = .failure(error)
                }
                decision = NodeStartPolicy.alertDecision(answer)
            }
            switch decision {
            case .go:
                if held {
                    emit(.init(node: node, phase: phase, status: .started, message: "Hold lifted: \(node) starts now"))
                }
                return nil
            case .closed(let opens):
                if policy.noWait {
                    let window = policy.window.map(\.description) ?? "?"
                    return RolloutFailure(
                        kind: .outsideWindow, node: node, step: nil,
                        cause: "outside the maintenance window",
                        message: "stopped before \(node): outside the maintenance window (\(window))"
                            + (opens.map { "; it opens at \(RolloutTimestamp.format($0))" } ?? "")
                            + " and --no-wait was given. Rerun nk3 inside the window to resume.")
                }
                if decision != lastSaid {
                    let until = opens.map { "until \(RolloutTimestamp.format($0)) (\(policy.window!.local($0)))" } ?? "(it never opens: no days)"
                    emit(.init(node: node, phase: .window, status: .waiting,
                               message: "\(node) waits for the maintenance window (\(policy.window!.description)) \(until)"))
                }
                let remaining = opens.map { max($0.timeIntervalSince(now()), 0.001) } ?? 3600
                let step = min(Duration.milliseconds(Int64(remaining * 1000)), policy.windowRecheck)
                try await clock.sleep(until: clock.now.advanced(by: step), tolerance: nil)
            case .alerts(let names):
                if decision != lastSaid {
                    emit(.init(node: node, phase: .alerts, status: .waiting,
                               message: "\(node) waits: Prometheus alert(s) firing: \(names.joined(separator: ", "))"))
                }
                try await clock.sleep(until: clock.now.advanced(by: policy.alertRecheck), tolerance: nil)
            case .alertsUnknown(let why):
                if decision != lastSaid {
                    emit(.init(node: node, phase: .alerts, status: .waiting,
                               message: "\(node) waits: cannot ask Prometheus for firing alerts (\(why))"))
                }
                try await clock.sleep(until: clock.now.advanced(by: policy.alertRecheck), tolerance: nil)
            }
            held = true
            lastSaid = decision
        }
    }
}
