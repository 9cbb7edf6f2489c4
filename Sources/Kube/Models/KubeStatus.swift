import Foundation

/// The API's `Status` object, returned with errors and some successes (apimachinery pkg/apis/meta/v1/types.go).
public struct KubeStatus: Codable, Sendable, Hashable {
    /// `Status`.
    public var kind: String? = "Status"
    /// `v1`.
    public var apiVersion: String? = "v1"
    /// Always `{}` in practice.
    public var metadata: ListMeta? = ListMeta()
    /// `Success` or `Failure`.
    public var status: String?
    /// Human message.
    public var message: String?
    /// Machine reason: NotFound, Conflict, TooManyRequests, …
    public var reason: String?
    /// Extra details.
    public var details: KubeStatusDetails?
    /// HTTP code.
    public var code: Int?

    /// Makes a status.
    public init(
        status: String? = "Failure", message: String? = nil, reason: String? = nil, details: KubeStatusDetails? = nil,
        code: Int? = nil
    ) {
        self.status = status
        self.message = message
        self.reason = reason
        self.details = details
        self.code = code
    }
}

/// `details` of a Status.
public struct KubeStatusDetails: Codable, Sendable, Hashable {
    /// Object name.
    public var name: String?
    /// API group.
    public var group: String?
    /// The resource (plural), e.g. `pods`.
    public var kind: String?
    /// Object uid.
    public var uid: String?
    /// Causes (a PDB refusal names the budget here).
    public var causes: [KubeStatusCause]?
    /// Suggested wait.
    public var retryAfterSeconds: Int?
    /// Makes details.
    public init(
        name: String? = nil, group: String? = nil, kind: String? = nil, uid: String? = nil,
        causes: [KubeStatusCause]? = nil, retryAfterSeconds: Int? = nil
    ) {
        self.name = name
        self.group = group
        self.kind = kind
        self.uid = uid
        self.causes = causes
        self.retryAfterSeconds = retryAfterSeconds
    }
}

/// One cause in a Status (its type is serialized as `reason`).
public struct KubeStatusCause: Codable, Sendable, Hashable {
    /// e.g. `DisruptionBudget`, `FieldValueInvalid`.
    public var reason: String?
    /// Message.
    public var message: String?
    /// Field path.
    public var field: String?
    /// Makes a cause.
    public init(reason: String? = nil, message: String? = nil, field: String? = nil) {
        self.reason = reason
        self.message = message
        self.field = field
    }
}

/// One event of a watch stream (apimachinery pkg/watch/watch.go).
public enum WatchEvent<Object: Codable & Sendable>: Sendable {
    /// ADDED.
    case added(Object)
    /// MODIFIED.
    case modified(Object)
    /// DELETED (the last state).
    case deleted(Object)
    /// BOOKMARK: only a resourceVersion.
    case bookmark(resourceVersion: String?)
    /// ERROR: a Status (e.g. 410 Expired).
    case error(KubeStatus)
}
