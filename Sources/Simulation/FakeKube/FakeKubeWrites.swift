import Foundation
import NIOCore
import NK3Common
import NK3Kube

/// The fake API's writes — a SIMULATION of create, update (PUT), patch and delete as kube-apiserver does them:
/// `?dryRun=All` persists nothing, a body or patched object that does not decode is refused (`FakeKubeStrict`),
/// writes to an object keep its status and writes to `/status` change only the status, and every write records its
/// field manager in `metadata.managedFields`.
extension FakeKubeRouter {
    func create(_ route: Route, _ request: HTTPServerRequest) -> HTTPServerResponse {
        let dry: Bool
        switch FakeKubeStrict.dryRun(request, options: "CreateOptions") {
        case .success(let d): dry = d
        case .failure(let refusal): return refusal.response
        }
        guard case .object(var obj)? = try? JSONDecoder().decode(JSONValue.self, from: Data(request.body.readableBytesView)) else {
            return Self.status(400, reason: "BadRequest", message: "the body of the request was not a JSON object")
        }
        let errors = FakeKubeStrict.decodeErrors(route.resource, .object(obj))
        guard errors.isEmpty else { return FakeKubeStrict.undecodableBody(route.resource, errors).response }
        guard case .object(var meta)? = obj["metadata"], case .string(let name)? = meta["name"], !name.isEmpty else {
            return Self.status(422, reason: "Invalid", message: "\(route.resource.kind).\(route.resource.group) is invalid: metadata.name: Required value: name is required")
        }
        if route.resource.namespaced { meta["namespace"] = .string(route.namespace ?? "default") }
        meta.removeValue(forKey: "resourceVersion")
        meta.removeValue(forKey: "uid")
        meta.removeValue(forKey: "managedFields")
        obj["metadata"] = .object(meta)
        let value = FakeKubeStrict.recordUpdate(
            old: .object([:]), new: .object(obj), manager: FakeKubeStrict.manager(request),
            apiVersion: route.resource.groupVersion, now: Date())
        let result: JSONValue? = state.store.withLock { s in
            s.write(dryRun: dry) { (s: inout FakeKubeState.Store) -> JSONValue? in
                let key = FakeKubeState.Store.key(route.resource, route.namespace, name)
                if s.objects[route.resource]?[key] != nil { return nil }
                return s.store(route.resource, value)
            }
        }
        guard let result else {
            return Self.status(
                409, reason: "AlreadyExists", message: "\(route.resource.qualified) \"\(name)\" already exists",
                details: KubeStatusDetails(name: name, group: route.resource.group, kind: route.resource.rawValue))
        }
        return Self.json(201, result)
    }

    func replace(_ route: Route, _ name: String, _ request: HTTPServerRequest, status: Bool) -> HTTPServerResponse {
        let dry: Bool
        switch FakeKubeStrict.dryRun(request, options: "UpdateOptions") {
        case .success(let d): dry = d
        case .failure(let refusal): return refusal.response
        }
        guard case .object(var obj)? = try? JSONDecoder().decode(JSONValue.self, from: Data(request.body.readableBytesView)),
            case .object(var meta)? = obj["metadata"]
        else {
            return Self.status(400, reason: "BadRequest", message: "the body of the request was not a JSON object with metadata")
        }
        let errors = FakeKubeStrict.decodeErrors(route.resource, .object(obj))
        guard errors.isEmpty else { return FakeKubeStrict.undecodableBody(route.resource, errors).response }
        if let n = meta["name"], n != .string(name) {
            return Self.status(400, reason: "BadRequest", message: "the name of the object (\(n)) does not match the name on the URL (\(name))")
        }
        meta["name"] = .string(name)
        if route.resource.namespaced { meta["namespace"] = .string(route.namespace ?? "default") }
        let sentRV = meta["resourceVersion"]
        meta.removeValue(forKey: "managedFields")
        obj["metadata"] = .object(meta)
        let r = route.resource
        let manager = FakeKubeStrict.manager(request)
        enum Outcome { case ok(JSONValue, created: Bool), conflict, missingRV, notFound }
        let outcome: Outcome = state.store.withLock { s in
            s.write(dryRun: dry) { (s: inout FakeKubeState.Store) -> Outcome in
                let key = FakeKubeState.Store.key(r, route.namespace, name)
                guard let existing = s.objects[r]?[key] else {
                    // kubernetes pkg/registry/coordination/lease/strategy.go: a PUT to a missing Lease creates it
                    // (AllowCreateOnUpdate); other kinds 404.
                    guard r == .leases else { return .notFound }
                    let v = FakeKubeStrict.recordUpdate(old: .object([:]), new: .object(obj), manager: manager, apiVersion: r.groupVersion, now: Date())
                    return .ok(s.store(r, v), created: true)
                }
                guard let sentRV, sentRV != .string("") else { return .missingRV }
                guard sentRV == existing["metadata"]?["resourceVersion"] else { return .conflict }
                let merged = Self.keepingSubresources(existing, .object(obj), r, status: status)
                let v = FakeKubeStrict.recordUpdate(old: existing, new: merged, manager: manager, apiVersion: r.groupVersion, now: Date())
                return .ok(s.store(r, v), created: false)
            }
        }
        switch outcome {
        case .ok(let v, let created): return Self.json(created ? 201 : 200, v)
        case .notFound: return notFound(r, name)
        case .missingRV:
            return Self.status(
                422, reason: "Invalid",
                message: "\(r.kind).\(r.group) \"\(name)\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
                details: KubeStatusDetails(
                    name: name, group: r.group, kind: r.kind,
                    causes: [KubeStatusCause(reason: "FieldValueInvalid", message: "Invalid value: 0x0: must be specified for an update", field: "metadata.resourceVersion")]))
        case .conflict: return Self.conflict(r, name)
        }
    }

    func patch(_ route: Route, _ name: String, _ request: HTTPServerRequest, status: Bool) -> HTTPServerResponse {
        let r = route.resource
        let dry: Bool
        switch FakeKubeStrict.dryRun(request, options: "PatchOptions") {
        case .success(let d): dry = d
        case .failure(let refusal): return refusal.response
        }
        let contentType = request.headers.first(name: "Content-Type")?.split(separator: ";").first.map {
            $0.trimmingCharacters(in: .whitespaces)
        } ?? ""
        let accepted = r == .cephclusters
            ? ["application/merge-patch+json"]  // kubernetes/kubernetes#97423: CRDs reject strategic merge patch
            : ["application/merge-patch+json", "application/strategic-merge-patch+json"]
        guard accepted.contains(contentType) else {
            return Self.status(
                415, reason: "UnsupportedMediaType",
                message: "the body of the request was in an unknown format - accepted media types include: \(accepted.joined(separator: ", ")) (SIMULATION: JSON patch is not simulated)")
        }
        guard let patch = try? JSONDecoder().decode(JSONValue.self, from: Data(request.body.readableBytesView)),
            case .object(var p) = patch
        else { return Self.status(400, reason: "BadRequest", message: "the patch is not a JSON object") }
        var wantRV: JSONValue? = nil
        if case .object(var m)? = p["metadata"] {
            wantRV = m.removeValue(forKey: "resourceVersion")
            m.removeValue(forKey: "managedFields")
            p["metadata"] = .object(m)
        }
        let manager = FakeKubeStrict.manager(request)
        enum Outcome { case ok(JSONValue), notFound, conflict, refused(FakeKubeRefusal) }
        let outcome: Outcome = state.store.withLock { s in
            s.write(dryRun: dry) { (s: inout FakeKubeState.Store) -> Outcome in
                s.stats.patches += 1
                let key = FakeKubeState.Store.key(r, route.namespace, name)
                guard let existing = s.objects[r]?[key] else { return .notFound }
                if let wantRV, wantRV != .null, wantRV != existing["metadata"]?["resourceVersion"] { return .conflict }
                let patched = existing.merging(patch: .object(p))
                let errors = FakeKubeStrict.decodeErrors(r, patched)
                guard errors.isEmpty else { return .refused(FakeKubeStrict.undecodablePatch(patch, errors)) }
                let merged = Self.keepingSubresources(existing, patched, r, status: status)
                let v = FakeKubeStrict.recordUpdate(old: existing, new: merged, manager: manager, apiVersion: r.groupVersion, now: Date())
                return .ok(s.store(r, v))
            }
        }
        switch outcome {
        case .ok(let v): return Self.json(200, v)
        case .notFound: return notFound(r, name)
        case .conflict: return Self.conflict(r, name)
        case .refused(let refusal): return refusal.response
        }
    }

    func delete(_ route: Route, _ name: String, _ request: HTTPServerRequest) -> HTTPServerResponse {
        let dry: Bool
        switch FakeKubeStrict.dryRun(request, options: "DeleteOptions") {
        case .success(let d): dry = d
        case .failure(let refusal): return refusal.response
        }
        let old = state.store.withLock { s in
            s.write(dryRun: dry) { $0.remove(route.resource, key: FakeKubeState.Store.key(route.resource, route.namespace, name)) }
        }
        guard let old else { return notFound(route.resource, name) }
        return Self.json(200, old)
    }

    /// The object a write stores: a write to the object keeps the stored `status`; a write to `/status` keeps
    /// everything but `status` (its metadata as stored, as `metav1.ResetObjectMetaForStatus` does) — kubernetes/kubernetes
    /// pkg/registry/core/node/strategy.go `nodeStrategy.PrepareForUpdate` ("newNode.Status = oldNode.Status") and
    /// `nodeStatusStrategy.PrepareForUpdate` ("newNode.Spec = oldNode.Spec").
    static func keepingSubresources(_ existing: JSONValue, _ new: JSONValue, _ r: FakeKubeResource, status: Bool) -> JSONValue {
        guard r.hasStatus, case .object(var o) = new, case .object(let old) = existing else { return new }
        if status {
            var kept = old
            kept["status"] = o["status"]
            if case .object(var meta)? = old["metadata"], let rv = new["metadata"]?["resourceVersion"] {
                meta["resourceVersion"] = rv
                kept["metadata"] = .object(meta)
            }
            return .object(kept)
        }
        o["status"] = old["status"]
        return .object(o)
    }
}

extension FakeKubeState.Store {
    /// Runs a write; with `dryRun` on a scratch copy that is thrown away (no object, resourceVersion, history, watch
    /// event or counter changes), as `?dryRun=All` is served: admission and validation, no storage.
    mutating func write<T>(dryRun: Bool, _ body: (inout Self) -> T) -> T {
        guard dryRun else { return body(&self) }
        var scratch = self
        scratch.watchers = [:]
        scratch.evictionHook = nil
        return body(&scratch)
    }
}
