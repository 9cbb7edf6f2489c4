import Foundation
import Logging
import NK3Kube
import NK3Protocol

/// Carrying out the machine's node and gate actions: each one becomes exactly one input.
extension RolloutExecutor {
    /// Carries out one node or gate action; every outcome becomes an input. Throws only on cancellation.
    func perform(_ action: RolloutMachine.Action, wait: Deadline?) async throws -> RolloutMachine.Input {
        let t = configuration.timeouts
        let deadline = wait?.at
        let since = wait?.since ?? clock.now
        switch action {
        case .sendBundle(let node, let bundle):
            do {
                let receipt = try await withTimeout(t.agentCall) { try await agents.submit(node: node, command: .apply(bundle)) }
                return .bundleAccepted(node: node, receipt: receipt)
            } catch {
                try rethrowCancellation(error)
                return .failed(
                    node: node, step: .send, kind: kind(of: error, default: .unreachable),
                    cause: "the agent did not accept the bundle: \(error)")
            }

        case .waitRebuild(let node, let operationID, let serial):
            while true {
                let asked = clock.now
                // A long poll: the agent answers as soon as the rebuild is over, or after `rebuildLongPoll`.
                let wait = deadline.map { min(Self.rebuildLongPoll, asked.duration(to: $0)) } ?? Self.rebuildLongPoll
                if let outcome = try await rebuildOutcome(node: node, operationID: operationID, serial: serial, wait: wait) {
                    return .rebuildFinished(node: node, outcome: outcome, at: now())
                }
                if let deadline, clock.now >= deadline { return .timedOut(node: node, step: .rebuild, after: t.rebuild) }
                // An agent that held the answer has waited already; one that answered at once (one that cannot
                // wait, a status fallback without an operation id, a failed call) is asked again at the usual pace.
                let pace = pace(since: since)
                if asked.duration(to: clock.now) < pace {
                    try await clock.sleep(until: clock.now.advanced(by: pace), tolerance: nil)
                }
            }

        case .drain(let node):
            do {
                try await cluster.cordon(node, reason: configuration.cordonReason)
            } catch {
                try rethrowCancellation(error)
                return .failed(node: node, step: .drain, kind: kind(of: error, default: .other), cause: "could not cordon: \(error)")
            }
            do {
                try await withTimeout(t.drain + t.agentCall) { try await cluster.drain(node, timeout: t.drain) }
            } catch is RolloutTimedOut {
                return .timedOut(node: node, step: .drain, after: t.drain)
            } catch {
                try rethrowCancellation(error)
                return .failed(node: node, step: .drain, kind: kind(of: error, default: .timeout), cause: "drain failed: \(error)")
            }
            // The reboot comes next: move off the node's API server now, so the line comes before "Rebooting X"
            // (the reboot action asks again, for a reboot without a drain).
            if let moved = await cluster.prepareReboot(node) {
                emit(.init(node: node, phase: .drain, status: moved.status, message: moved.message))
            }
            do {
                let status = try await withTimeout(t.agentCall) { try await agents.status(node: node) }
                return .drained(node: node, status: status)
            } catch {
                try rethrowCancellation(error)
                return .failed(
                    node: node, step: .reboot, kind: kind(of: error, default: .unreachable),
                    cause: "the agent did not answer before the reboot: \(error)")
            }

        case .reboot(let node):
            if let moved = await cluster.prepareReboot(node) {
                emit(.init(node: node, phase: .reboot, status: moved.status, message: moved.message))
            }
            do {
                _ = try await withTimeout(t.agentCall) {
                    try await agents.submit(node: node, command: .reboot(RebootCommand(reason: configuration.cordonReason)))
                }
                return .rebootIssued(node: node)
            } catch {
                try rethrowCancellation(error)
                return .failed(
                    node: node, step: .reboot, kind: kind(of: error, default: .unreachable),
                    cause: "the agent did not accept the reboot: \(error)")
            }

        case .waitReachable(let node, _, let sawOldBootID):
            while true {
                // Never ask at once: the agent answers the reboot before it goes down, so an immediate look
                // would only find the old boot.
                try await clock.sleep(until: clock.now.advanced(by: pace(since: since)), tolerance: nil)
                if let deadline, clock.now >= deadline { return .timedOut(node: node, step: .waitReachable, after: t.reboot) }
                do {
                    let status = try await withTimeout(min(t.agentCall, t.reachablePoll)) { try await agents.status(node: node) }
                    return .agentReachable(node: node, status: status, at: now())
                } catch {
                    try rethrowCancellation(error)  // down while rebooting: keep polling
                    if sawOldBootID { return .agentWentDown(node: node) }
                }
            }

        case .waitReady(let node, let boot):
            var lastError: (any Error)?
            var last: NodeReadiness?
            while true {
                do {
                    let readiness = try await withTimeout(t.agentCall) { try await cluster.nodeReadiness(node, boot: boot) }
                    if readiness == .ready { return .nodeReady(node: node, at: now()) }
                    if case .previousBoot(let api) = readiness, last != readiness, let boot {
                        emit(RolloutMessages.readyFromPreviousBoot(node, apiBootID: api, bootID: boot.bootID))
                    }
                    last = readiness
                    lastError = nil
                } catch {
                    try rethrowCancellation(error)  // the API may be down while a server reboots: keep polling
                    lastError = error
                }
                if let deadline, clock.now >= deadline {
                    // Say so when it was the API, or a status from before the reboot, that never said "Ready".
                    if let lastError {
                        return .failed(
                            node: node, step: .waitReady, kind: .timeout,
                            cause: RolloutMessages.notReadyCause(after: t.ready, apiFailure: "\(lastError)"))
                    }
                    if case .previousBoot(let api) = last, let boot {
                        return .failed(
                            node: node, step: .waitReady, kind: .timeout,
                            cause: RolloutMessages.notReadyCause(after: t.ready, staleBootID: api, bootID: boot.bootID))
                    }
                    return .timedOut(node: node, step: .waitReady, after: t.ready)
                }
                try await clock.sleep(until: clock.now.advanced(by: pace(since: since)), tolerance: nil)
            }

        case .uncordon(let node):
            do {
                let ours = try await withTimeout(t.agentCall) { try await cluster.uncordonIfOurs(node) }
                return .uncordoned(node: node, wasOurs: ours, at: now())
            } catch {
                try rethrowCancellation(error)
                return .failed(node: node, step: .uncordon, kind: kind(of: error, default: .other), cause: "could not uncordon: \(error)")
            }

        case .runGates(let since):
            let sink = self.sink
            let now = self.now
            do {
                try await withTimeout(t.gates + t.agentCall) {
                    try await cluster.runGates(since: since, timeout: t.gates) { line in
                        sink.emit(RolloutEvent(timestamp: now(), node: line.node, phase: .gates, status: line.status, message: line.message))
                    }
                }
                return .gatesPassed(at: now())
            } catch is RolloutTimedOut {
                return .timedOut(node: nil, step: .gates, after: t.gates)
            } catch {
                try rethrowCancellation(error)
                return .failed(node: nil, step: .gates, kind: kind(of: error, default: .timeout), cause: "\(error)")
            }

        case .confirm(let node, let serial):
            do {
                _ = try await withTimeout(t.agentCall) {
                    try await agents.submit(node: node, command: .confirm(ConfirmCommand(applySerial: serial)))
                }
                return try await awaitCommitted(node: node, serial: serial, since: since)
            } catch {
                try rethrowCancellation(error)
                if let status = try? await withTimeout(t.agentCall, { try await agents.status(node: node) }),
                    let last = status.lastResult, last.serial == serial, last.outcome == .rolledBack
                {
                    return .failed(
                        node: node, step: .confirm, kind: .rolledBack,
                        cause: "the agent had already rolled back apply \(serial): \(last.message)")
                }
                return .failed(
                    node: node, step: .confirm, kind: kind(of: error, default: .unreachable),
                    cause: "the agent did not accept the confirm: \(error)")
            }

        case .notify, .saveProgress, .abort, .done:
            preconditionFailure("handled by the driver loop")
        }
    }

    /// After the agent accepted the confirm of apply `serial`, waits until it no longer has that apply open: the
    /// receipt comes first, then the agent commits (with a trial boot, it makes the new generation the boot
    /// default). Only then is "Confirmed … keeps the new generation" true, and only then can the next rollout not
    /// find this apply still open — an upgrade right after an apply took it for its own and skipped that node
    /// (`nk3 demo` showed it: "3 updated", one node left on the old nixpkgs). A failed status read counts as
    /// committed, as the receipt did before this wait existed.
    private func awaitCommitted(node: String, serial: UInt64, since: C.Instant) async throws -> RolloutMachine.Input {
        let t = configuration.timeouts
        let end = clock.now.advanced(by: t.agentCall)
        while true {
            guard let status = try? await withTimeout(t.agentCall, { try await agents.status(node: node) }) else {
                return .confirmed(node: node)
            }
            if status.operation?.serial != serial {
                if let last = status.lastResult, last.serial == serial, last.outcome == .rolledBack || last.outcome == .failed {
                    return .failed(
                        node: node, step: .confirm, kind: last.outcome == .rolledBack ? .rolledBack : .other,
                        cause: "the agent accepted the confirm but then \(last.outcome == .rolledBack ? "rolled back" : "failed") apply \(serial): \(last.message)")
                }
                return .confirmed(node: node)
            }
            if clock.now >= end {
                return .failed(
                    node: node, step: .confirm, kind: .timeout,
                    cause: "the agent accepted the confirm of apply \(serial) but had not finished committing it after "
                        + RolloutDurations.describe(t.agentCall))
            }
            try await clock.sleep(until: clock.now.advanced(by: pace(since: since)), tolerance: nil)
        }
    }

    /// How long one `GET /v1/operations/ID` may hold its answer while a node rebuilds.
    static var rebuildLongPoll: Duration { .seconds(10) }

    /// Reads an apply's state (a long poll of up to `wait` where the agent can); nil while it is still rebuilding
    /// (or the agent is briefly unreachable).
    private func rebuildOutcome(node: String, operationID: String?, serial: UInt64?, wait: Duration) async throws
        -> RebuildOutcome?
    {
        let timeout = configuration.timeouts.agentCall
        var operation: OperationStatus?
        var result: OperationResult?
        var logTail = ""
        do {
            if let operationID {
                let report = try await withTimeout(timeout + wait) {
                    try await agents.operation(node: node, id: operationID, waitUpTo: wait)
                }
                (operation, result, logTail) = (report.operation, report.result, report.logTail)
            } else {
                let status = try await withTimeout(timeout) { try await agents.status(node: node) }
                operation = status.operation.flatMap { $0.serial == serial ? $0 : nil }
                result = status.lastResult.flatMap { $0.serial == serial ? $0 : nil }
            }
        } catch {
            try rethrowCancellation(error)
            return nil
        }
        if let result {
            let detail = logTail.isEmpty ? result.message : result.message + "\n" + logTail
            switch result.outcome {
            case .unchanged: return .unchanged(message: result.message)
            case .committed: return .committed
            case .failed: return .failed(message: detail)
            case .rolledBack: return .rolledBack(message: detail)
            case .rebooted: return nil
            }
        }
        if let operation, operation.phase == .awaitingConfirm {
            return .awaitingConfirm(bootIDAtRebuild: operation.bootIDAtRebuild)
        }
        return nil
    }

    func kind(of error: any Error, default fallback: RolloutFailure.Kind) -> RolloutFailure.Kind {
        if let classified = error as? any RolloutClassifiedError { return classified.rolloutFailureKind }
        if error is WireError { return .other }  // the agent answered and refused
        if error is RolloutTimedOut { return .timeout }
        return fallback
    }

    func rethrowCancellation(_ error: any Error) throws {
        if error is CancellationError || Task.isCancelled { throw CancellationError() }
    }

    /// Runs `body`, throwing `RolloutTimedOut` if it takes longer than `timeout` on the executor's clock.
    func withTimeout<T: Sendable>(_ timeout: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let clock = self.clock
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await clock.sleep(until: clock.now.advanced(by: timeout), tolerance: nil)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else { throw RolloutTimedOut(after: timeout) }
            return value
        }
    }
}
