import Foundation

/// `metadata` of a Kubernetes object: the fields nk3 reads or writes (unknown fields are ignored).
public struct ObjectMeta: Codable, Sendable, Hashable {
    /// Object name.
    public var name: String?
    /// Namespace (nil for cluster-scoped objects such as nodes).
    public var namespace: String?
    /// Unique id; a recreated object with the same name gets a new one.
    public var uid: String?
    /// Opaque version for optimistic concurrency (docs/UPSTREAM.md#nodes, #lease).
    public var resourceVersion: String?
    /// Spec generation (compare with `status.observedGeneration`, docs/UPSTREAM.md#rollout-status).
    public var generation: Int?
    /// Labels.
    public var labels: [String: String]?
    /// Annotations.
    public var annotations: [String: String]?
    /// Owners; drain looks only at the one with `controller: true` (docs/UPSTREAM.md#drain).
    public var ownerReferences: [OwnerReference]?
    /// RFC 3339 creation time.
    public var creationTimestamp: String?
    /// Set while the object terminates.
    public var deletionTimestamp: String?
    /// Which field manager set which fields (https://kubernetes.io/docs/reference/using-api/server-side-apply/#field-management).
    /// `KubeClient` does not send it back on Lease writes (an update that carries managedFields replaces the server's record).
    /// Kept as the JSON the API sent (`managedFieldsEntries` reads it).
    public var managedFields: JSONValue?

    /// Makes metadata.
    public init(
        name: String? = nil, namespace: String? = nil, uid: String? = nil, resourceVersion: String? = nil,
        generation: Int? = nil, labels: [String: String]? = nil, annotations: [String: String]? = nil,
        ownerReferences: [OwnerReference]? = nil, creationTimestamp: String? = nil, deletionTimestamp: String? = nil
    ) {
        self.name = name
        self.namespace = namespace
        self.uid = uid
        self.resourceVersion = resourceVersion
        self.generation = generation
        self.labels = labels
        self.annotations = annotations
        self.ownerReferences = ownerReferences
        self.creationTimestamp = creationTimestamp
        self.deletionTimestamp = deletionTimestamp
    }

    /// The entries of `managedFields`.
    public var managedFieldsEntries: [ManagedFieldsEntry] {
        guard case .array(let list)? = managedFields else { return [] }
        func text(_ v: JSONValue?) -> String? { if case .string(let s)? = v { return s } else { return nil } }
        return list.map { e in
            var entry = ManagedFieldsEntry(manager: text(e["manager"]), operation: text(e["operation"]), fieldsV1: e["fieldsV1"])
            entry.subresource = text(e["subresource"])
            return entry
        }
    }

    /// The manager of the field at `path` (e.g. `["spec", "unschedulable"]`): the entry whose `fieldsV1` holds it.
    /// nil when no entry does (the field is unset, or the API keeps no managedFields).
    public func manager(of path: [String]) -> String? {
        managedFieldsEntries.last { entry in
            var v: JSONValue? = entry.fieldsV1
            for key in path { v = v?["f:" + key] }
            return v != nil
        }?.manager
    }

    /// The controlling owner (`controller: true`), as `metav1.GetControllerOf` finds it.
    public var controller: OwnerReference? { ownerReferences?.first { $0.controller == true } }
}

/// One entry of `metadata.managedFields` (`metav1.ManagedFieldsEntry`).
public struct ManagedFieldsEntry: Codable, Sendable, Hashable {
    /// The field manager: an update's `fieldManager` parameter, else its User-Agent up to the first `/`.
    public var manager: String?
    /// `Update` or `Apply`.
    public var operation: String?
    /// The API version the fields were set through.
    public var apiVersion: String?
    /// When the entry last changed.
    public var time: String?
    /// `FieldsV1`.
    public var fieldsType: String?
    /// The fields, as nested `{"f:spec":{"f:unschedulable":{}}}` keys.
    public var fieldsV1: JSONValue?
    /// The subresource written (`status`), if any.
    public var subresource: String?

    /// Makes an entry.
    public init(manager: String?, operation: String? = "Update", fieldsV1: JSONValue?) {
        self.manager = manager
        self.operation = operation
        self.fieldsV1 = fieldsV1
    }
}

/// One entry of `metadata.ownerReferences`.
public struct OwnerReference: Codable, Sendable, Hashable {
    /// API version of the owner, e.g. `apps/v1`.
    public var apiVersion: String
    /// Kind of the owner, e.g. `DaemonSet`.
    public var kind: String
    /// Owner name.
    public var name: String
    /// Owner uid.
    public var uid: String
    /// True for the managing controller.
    public var controller: Bool?
    /// Foreground deletion blocking flag.
    public var blockOwnerDeletion: Bool?

    /// Makes an owner reference.
    public init(
        apiVersion: String, kind: String, name: String, uid: String, controller: Bool? = true,
        blockOwnerDeletion: Bool? = true
    ) {
        self.apiVersion = apiVersion
        self.kind = kind
        self.name = name
        self.uid = uid
        self.controller = controller
        self.blockOwnerDeletion = blockOwnerDeletion
    }
}

/// `metadata` of a list response.
public struct ListMeta: Codable, Sendable, Hashable {
    /// The collection's resourceVersion (start a watch from here, docs/UPSTREAM.md#watch).
    public var resourceVersion: String?
    /// Continue token for chunked lists (docs/UPSTREAM.md#drain).
    public var `continue`: String?
    /// Makes list metadata.
    public init(resourceVersion: String? = nil, continue: String? = nil) {
        self.resourceVersion = resourceVersion
        self.continue = `continue`
    }
}

/// A list response (`NodeList`, `PodList`, …).
public struct KubeList<Item: Codable & Sendable>: Codable, Sendable {
    /// e.g. `v1`.
    public var apiVersion: String?
    /// e.g. `NodeList`.
    public var kind: String?
    /// List metadata.
    public var metadata: ListMeta?
    /// The items (a `null` list decodes as empty).
    public var items: [Item]

    /// Makes a list.
    public init(apiVersion: String?, kind: String?, metadata: ListMeta?, items: [Item]) {
        self.apiVersion = apiVersion
        self.kind = kind
        self.metadata = metadata
        self.items = items
    }

    enum CodingKeys: String, CodingKey { case apiVersion, kind, metadata, items }

    /// Decodes a list; `items: null` is an empty list.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        apiVersion = try c.decodeIfPresent(String.self, forKey: .apiVersion)
        kind = try c.decodeIfPresent(String.self, forKey: .kind)
        metadata = try c.decodeIfPresent(ListMeta.self, forKey: .metadata)
        items = try c.decodeIfPresent([Item].self, forKey: .items) ?? []
    }
}

/// A condition as most objects report it (`type`, `status` "True"/"False"/"Unknown", `reason`, `message`).
public struct KubeCondition: Codable, Sendable, Hashable {
    /// Condition type, e.g. `Ready`, `Available`.
    public var type: String
    /// "True", "False" or "Unknown" (docs/UPSTREAM.md#nodes).
    public var status: String
    /// Machine-readable reason, e.g. `KubeletReady`, `MinimumReplicasAvailable`.
    public var reason: String?
    /// Human message.
    public var message: String?
    /// Last heartbeat (nodes).
    public var lastHeartbeatTime: String?
    /// Last status change.
    public var lastTransitionTime: String?
    /// Last update (deployments).
    public var lastUpdateTime: String?

    /// Makes a condition.
    public init(
        type: String, status: String, reason: String? = nil, message: String? = nil,
        lastHeartbeatTime: String? = nil, lastTransitionTime: String? = nil, lastUpdateTime: String? = nil
    ) {
        self.type = type
        self.status = status
        self.reason = reason
        self.message = message
        self.lastHeartbeatTime = lastHeartbeatTime
        self.lastTransitionTime = lastTransitionTime
        self.lastUpdateTime = lastUpdateTime
    }

    /// `status == "True"`.
    public var isTrue: Bool { status == "True" }
}

/// Kubernetes time stamps: `Time` is RFC 3339 in whole seconds, `MicroTime` has 6 fraction digits
/// (docs/UPSTREAM.md#lease).
public enum KubeTime {
    /// Formats a date as a `Time` (`2024-05-01T12:00:00Z`).
    public static func format(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle())
    }

    /// Formats a date as a `MicroTime` (`2024-05-01T12:03:10.482113Z`).
    public static func formatMicro(_ date: Date) -> String {
        let whole = floor(date.timeIntervalSince1970)
        let micros = Int(((date.timeIntervalSince1970 - whole) * 1_000_000).rounded(.down))
        let base = format(Date(timeIntervalSince1970: whole))
        return String(base.dropLast()) + "." + String(format: "%06d", min(micros, 999_999)) + "Z"
    }

    /// Parses RFC 3339 with or without fractional seconds, `Z` or a numeric offset.
    public static func parse(_ text: String) -> Date? {
        if let d = try? Date(text, strategy: .iso8601) { return d }
        if let d = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) { return d }
        return nil
    }
}
