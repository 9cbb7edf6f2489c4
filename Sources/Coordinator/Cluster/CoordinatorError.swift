import Foundation

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
