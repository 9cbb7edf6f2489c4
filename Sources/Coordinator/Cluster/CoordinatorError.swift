import Foundation
import NK3Kube

/// An error of the coordinator's glue (loading a cluster, planning), with the rollout exit-code kind it maps to.
public struct CoordinatorError: Error, Sendable, Hashable, CustomStringConvertible, RolloutClassifiedError {
    /// The exit-code kind (see `RolloutFailure.Kind`).
    public var kind: RolloutFailure.Kind
    /// What went wrong and how to fix it.
    public var message: String

    /// Makes an error.
    public init(_ kind: RolloutFailure.Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var rolloutFailureKind: RolloutFailure.Kind { kind }
    public var description: String { message }
}

/// The exit-code kind of a Kubernetes client error: an API that cannot be reached is `unreachable` (not "another
/// rollout holds the lease"), a refused drain is `drainRefused`, a wait that ran out is `timeout`.
extension KubeError: RolloutClassifiedError {
    public var rolloutFailureKind: RolloutFailure.Kind {
        switch code {
        case .transport: return .unreachable
        case .drainRefused: return .drainRefused
        case .timeout: return .timeout
        default: return .other
        }
    }
}
