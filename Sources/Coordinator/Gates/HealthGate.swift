import Foundation
import NK3Kube

/// The outcome of one check of one health gate.
public struct GateResult: Sendable, Hashable {
    /// Whether the gate passes now.
    public var passed: Bool
    /// The human lines (the Python nk3's output, github.com/nihr43/nk3: "kubelet is ready on X", "4 daemonsets healthy
    /// in namespace kube-system", "1 deployments recovering in namespace default", "ceph state is HEALTH_WARN").
    public var lines: [GateReport]
    /// Why it does not pass (named in timeout errors), nil when it passes.
    public var failure: String?
    /// Waiting cannot make it pass (a Deployment past its progress deadline): the gates stop at once.
    public var unrecoverable: Bool

    /// Makes a result.
    public init(passed: Bool, lines: [GateReport], failure: String? = nil, unrecoverable: Bool = false) {
        self.passed = passed
        self.lines = lines
        self.failure = failure
        self.unrecoverable = unrecoverable
    }
}

/// A named health gate: a check, how often to run it, and how long one run may take.
public struct HealthGate: Sendable {
    /// Name used in errors, e.g. `daemonsets in kube-system`.
    public var name: String
    /// The check (a thin fetch, then pure `GateLogic`).
    public var check: @Sendable () async throws -> GateResult
    /// Pause between checks while it fails (short: a gate notices recovery within ~100 ms).
    public var period: Duration
    /// Longest one check may take before it counts as failed (and is retried).
    public var timeout: Duration

    /// Makes a gate.
    public init(
        name: String, period: Duration = .milliseconds(100), timeout: Duration = .seconds(10),
        check: @escaping @Sendable () async throws -> GateResult
    ) {
        self.name = name
        self.check = check
        self.period = period
        self.timeout = timeout
    }
}

/// A health-gate failure: a code, and a message naming the gate(s) still failing and why.
public struct HealthGateError: Error, Sendable, Hashable, CustomStringConvertible, RolloutClassifiedError {
    /// What went wrong.
    public enum Code: String, Sendable, Hashable {
        /// The deadline passed with gates still failing.
        case timeout
        /// A check cannot succeed by waiting (credentials, RBAC, kubeconfig): stopped early.
        case unrecoverable
    }
    /// The code.
    public var code: Code
    /// The gates still failing (names).
    public var failingGates: [String]
    /// What went wrong and what to look at.
    public var message: String

    /// Makes an error.
    public init(_ code: Code, failingGates: [String], message: String) {
        self.code = code
        self.failingGates = failingGates
        self.message = message
    }

    public var description: String { message }

    public var rolloutFailureKind: RolloutFailure.Kind { code == .timeout ? .timeout : .other }
}
