import Foundation
import NIOCore
import NK3Kube
import Synchronization

// MARK: - store internals

extension FakeKubeState.Store {
    static func key(_ r: FakeKubeResource, _ namespace: String?, _ name: String) -> String {
        r.namespaced ? "\(namespace ?? "default")/\(name)" : name
    }

    static func key(_ r: FakeKubeResource, _ value: JSONValue) -> String {
        let ns: String? = { if case .string(let s)? = value["metadata"]?["namespace"] { return s }; return nil }()
        let name: String = { if case .string(let s)? = value["metadata"]?["name"] { return s }; return "" }()
        return key(r, ns, name)
    }

    mutating func nextRV() -> String {
        resourceVersion += 1
        return String(resourceVersion)
    }

    /// Stores a value (create or replace), stamping metadata; emits ADDED or MODIFIED.
    mutating func store(_ r: FakeKubeResource, _ value: JSONValue) -> JSONValue {
        let k = Self.key(r, value)
        let existing = objects[r]?[k]
        var meta: [String: JSONValue] = [:]
        if case .object(let m)? = value["metadata"] { meta = m }
        if r.namespaced, meta["namespace"] == nil { meta["namespace"] = .string("default") }
        meta["uid"] = existing?["metadata"]?["uid"] ?? meta["uid"] ?? .string(UUID().uuidString.lowercased())
        meta["creationTimestamp"] =
            existing?["metadata"]?["creationTimestamp"] ?? meta["creationTimestamp"] ?? .string(KubeTime.format(Date()))
        meta["resourceVersion"] = .string(nextRV())
        var obj: [String: JSONValue] = [:]
        if case .object(let o) = value { obj = o }
        obj["apiVersion"] = .string(r.groupVersion)
        obj["kind"] = .string(r.kind)
        obj["metadata"] = .object(meta)
        let stored = JSONValue.object(obj)
        objects[r, default: [:]][k] = stored
        typed[r]?[k] = nil
        notify(r, type: existing == nil ? "ADDED" : "MODIFIED", stored)
        return read(r, key: k) ?? stored
    }

    mutating func remove(_ r: FakeKubeResource, key k: String) -> JSONValue? {
        guard let old = objects[r]?.removeValue(forKey: k) else { return nil }
        typed[r]?[k] = nil
        _ = nextRV()
        notify(r, type: "DELETED", old)
        return old
    }

    func read(_ r: FakeKubeResource, key k: String) -> JSONValue? {
        guard let v = objects[r]?[k] else { return nil }
        return r == .poddisruptionbudgets ? withDerivedStatus(v) : v
    }

    func list(_ r: FakeKubeResource, namespace: String?) -> [JSONValue] {
        keys(r, namespace: namespace).compactMap { read(r, key: $0) }
    }

    /// Keys of a resource's objects (optionally in one namespace), sorted.
    func keys(_ r: FakeKubeResource, namespace: String?) -> [String] {
        (objects[r] ?? [:]).keys.sorted().filter { k in
            guard let namespace, r.namespaced else { return true }
            return k.hasPrefix(namespace + "/")
        }
    }

    /// The object as `T` (nil if absent or not decodable), from the typed cache when it has not changed.
    /// PodDisruptionBudgets are not cached: their status is derived from the pods on every read.
    mutating func decoded<T: Decodable & Sendable>(_ r: FakeKubeResource, key k: String, as type: T.Type) -> T? {
        let id = ObjectIdentifier(T.self)
        if r != .poddisruptionbudgets, let hit = typed[r]?[k]?[id] as? T { return hit }
        guard let value = read(r, key: k), let decoded = try? value.decode(as: T.self) else { return nil }
        if r != .poddisruptionbudgets { typed[r, default: [:]][k, default: [:]][id] = decoded }
        return decoded
    }

    mutating func notify(_ r: FakeKubeResource, type: String, _ object: JSONValue) {
        history.append(FakeKubeState.HistoryEvent(resourceVersion: resourceVersion, resource: r, type: type, object: object))
        if history.count > Self.historyLimit {
            let dropped = history.count - Self.historyLimit / 2
            historyStart = history[dropped - 1].resourceVersion
            history.removeFirst(dropped)
        }
        guard !watchers.isEmpty else { return }
        var lineBytes: ByteBuffer? = nil
        for w in watchers.values where w.resource == r && Self.matches(object, namespace: w.namespace, w.fieldSelector) {
            if lineBytes == nil {
                let event = JSONValue.object(["type": .string(type), "object": r == .poddisruptionbudgets ? withDerivedStatus(object) : object])
                var data = event.jsonData()
                data.append(UInt8(ascii: "\n"))
                lineBytes = ByteBuffer(bytes: data)
            }
            w.continuation.yield(lineBytes!)
        }
    }

    static func matches(_ object: JSONValue, namespace: String?, _ selector: [(path: [String], value: String)]) -> Bool {
        if let namespace, object["metadata"]?["namespace"] != .string(namespace) { return false }
        for term in selector {
            var v: JSONValue? = object
            for p in term.path { v = v?[p] }
            guard case .string(let s)? = v, s == term.value else { return false }
        }
        return true
    }

    // MARK: PDB accounting (docs/UPSTREAM.md#poddisruptionbudget)

    func pods(matching pdb: PodDisruptionBudget) -> [Pod] {
        let ns = pdb.metadata.namespace ?? "default"
        return list(.pods, namespace: ns).compactMap { try? $0.decode(as: Pod.self) }.filter { Self.selects(pdb, $0) }
    }

    /// Whether `pdb` covers `pod`: "A null selector will match no pods, while an empty ({}) selector will select all
    /// pods within the namespace" (kubernetes/api policy/v1/types.go `PodDisruptionBudgetSpec.Selector`).
    static func selects(_ pdb: PodDisruptionBudget, _ pod: Pod) -> Bool {
        guard let selector = pdb.spec?.selector else { return false }
        return selector.matches(pod.metadata.labels ?? [:])
    }

    func derivedStatus(_ pdb: PodDisruptionBudget) -> PodDisruptionBudgetStatus {
        let matched = pods(matching: pdb)
        let expected = matched.count
        let healthy = matched.filter { $0.isReady && $0.metadata.deletionTimestamp == nil && !$0.isTerminal }.count
        var desired = 0
        if let min = pdb.spec?.minAvailable {
            desired = min.resolve(total: expected, roundUp: true)
        } else if let maxU = pdb.spec?.maxUnavailable {
            desired = max(0, expected - maxU.resolve(total: expected, roundUp: true))
        }
        let allowed = expected <= 0 ? 0 : max(0, healthy - desired)
        return PodDisruptionBudgetStatus(
            observedGeneration: pdb.metadata.generation ?? 1, disruptionsAllowed: allowed, currentHealthy: healthy,
            desiredHealthy: desired, expectedPods: expected,
            conditions: [
                KubeCondition(
                    type: "DisruptionAllowed", status: allowed > 0 ? "True" : "False",
                    reason: allowed > 0 ? "SufficientPods" : "InsufficientPods")
            ])
    }

    func withDerivedStatus(_ v: JSONValue) -> JSONValue {
        guard let pdb = try? v.decode(as: PodDisruptionBudget.self),
            let status = try? JSONValue.from(derivedStatus(pdb))
        else { return v }
        guard case .object(var o) = v else { return v }
        o["status"] = status
        return .object(o)
    }
}
