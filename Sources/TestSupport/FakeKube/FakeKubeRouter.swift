import Foundation
import NIOCore
import NIOHTTP1
import NK3Common
import NK3Kube

/// The request handler of the fake Kubernetes API server — a SIMULATION of the API's REST surface as nk3
/// and `kubectl get … -o json` use it: discovery, get/list/watch, create/update/patch/delete, the
/// `pods/{name}/eviction` subresource with PodDisruptionBudget accounting, and real `Status` error bodies
/// (docs/UPSTREAM.md#eviction, #watch, #lease, #api-errors). A pure function of the request and `FakeKubeState`:
/// testable without sockets, served over TLS by `FakeKubeServer`.
public struct FakeKubeRouter: Sendable {
    /// The state it serves.
    public let state: FakeKubeState
    /// Refuse requests without a verified client certificate or a known bearer token (401).
    public var requireAuthentication: Bool

    /// Makes a router.
    public init(state: FakeKubeState, requireAuthentication: Bool = true) {
        self.state = state
        self.requireAuthentication = requireAuthentication
    }

    /// Answers one request.
    public func handle(_ request: HTTPServerRequest) async -> HTTPServerResponse {
        let (fault, authorized) = state.store.withLock { s -> (FakeKubeFault?, Bool) in
            s.stats.requests += 1
            var ok = request.clientCertificate != nil
            if !ok, let auth = request.headers.first(name: "Authorization"), auth.hasPrefix("Bearer ") {
                ok = s.tokens.contains(String(auth.dropFirst("Bearer ".count)))
            }
            guard ok || !requireAuthentication else { return (nil, false) }
            for i in s.faults.indices where s.faults[i].remaining > 0 {
                if let p = s.faults[i].pathPrefix, !request.path.hasPrefix(p) { continue }
                s.faults[i].remaining -= 1
                s.stats.faultsServed += 1
                return (s.faults[i].fault, true)
            }
            s.faults.removeAll { $0.remaining <= 0 }
            return (nil, true)
        }
        guard authorized else { return Self.status(401, reason: "Unauthorized", message: "Unauthorized") }
        if let fault { return Self.response(for: fault) }
        if let d = discovery(request.path) { return d }
        guard let route = Route(path: request.path) else {
            return Self.status(404, reason: "NotFound", message: "the server could not find the requested resource")
        }
        let key = Self.routeKey(request, route)
        state.store.withLock { $0.stats.byRoute[key, default: 0] += 1 }
        switch (request.method, route.name, route.subresource) {
        case (.GET, nil, nil):
            let watch = request.query["watch"]
            if watch == "true" || watch == "1" { return self.watch(route, request) }
            return list(route, request)
        case (.GET, let name?, nil): return get(route, name)
        case (.POST, nil, nil): return create(route, request)
        case (.PUT, let name?, nil): return replace(route, name, request)
        case (.PATCH, let name?, nil): return patch(route, name, request)
        case (.DELETE, let name?, nil): return delete(route, name)
        case (.POST, let name?, "eviction") where route.resource == .pods: return evict(route, name, request)
        default:
            return Self.status(405, reason: "MethodNotAllowed", message: "the server does not allow this method on the requested resource")
        }
    }

    // MARK: - routes

    struct Route {
        var resource: FakeKubeResource
        var namespace: String?
        var name: String?
        var subresource: String?

        /// `/api/v1/[namespaces/{ns}/]{resource}[/{name}[/{sub}]]` or `/apis/{group}/{version}/…`.
        init?(path: String) {
            var segs = path.split(separator: "/").map { String($0).removingPercentEncoding ?? String($0) }
            let group: String
            let version: String
            if segs.first == "api", segs.count >= 3 {
                group = ""
                version = segs[1]
                segs.removeFirst(2)
            } else if segs.first == "apis", segs.count >= 4 {
                group = segs[1]
                version = segs[2]
                segs.removeFirst(3)
            } else {
                return nil
            }
            if segs.first == "namespaces", segs.count >= 3 {
                namespace = segs[1]
                segs.removeFirst(2)
            }
            guard let r = FakeKubeResource.find(group: group, version: version, plural: segs[0]) else { return nil }
            if namespace != nil && !r.namespaced { return nil }
            resource = r
            name = segs.count > 1 ? segs[1] : nil
            subresource = segs.count > 2 ? segs[2] : nil
            if segs.count > 3 { return nil }
        }
    }

    /// The key of `FakeKubeStats.byRoute`.
    static func routeKey(_ request: HTTPServerRequest, _ route: Route) -> String {
        var key = "\(request.method.rawValue) \(route.resource.rawValue)"
        if route.name != nil { key += "/{name}" }
        if let sub = route.subresource { key += "/\(sub)" }
        if route.name == nil, request.method == .GET {
            let watch = request.query["watch"] == "true" || request.query["watch"] == "1"
            key += " (\(watch ? "watch" : "list")\(route.namespace == nil ? "" : ", one namespace"))"
        }
        return key
    }

    private func notFound(_ r: FakeKubeResource, _ name: String) -> HTTPServerResponse {
        // apimachinery pkg/api/errors/errors.go: details.kind is the resource (plural).
        Self.status(
            404, reason: "NotFound", message: "\(r.qualified) \"\(name)\" not found",
            details: KubeStatusDetails(name: name, group: r.group.isEmpty ? nil : r.group, kind: r.rawValue))
    }

    private func get(_ route: Route, _ name: String) -> HTTPServerResponse {
        guard let v = state.object(route.resource, namespace: route.namespace, name: name) else {
            return notFound(route.resource, name)
        }
        return Self.json(200, v)
    }

    private func list(_ route: Route, _ request: HTTPServerRequest) -> HTTPServerResponse {
        let fields = Self.parseSelector(request.query["fieldSelector"])
        let labels = Self.parseSelector(request.query["labelSelector"])
        let (items, rv) = state.store.withLock { s in
            (s.list(route.resource, namespace: route.namespace), s.resourceVersion)
        }
        let filtered = items.filter { obj in
            FakeKubeState.Store.matches(obj, namespace: nil, fields.map { (path: $0.key.split(separator: ".").map(String.init), value: $0.value) })
                && labels.allSatisfy { obj["metadata"]?["labels"]?[$0.key] == .string($0.value) }
        }
        return Self.json(
            200,
            .object([
                "kind": .string(route.resource.kind + "List"), "apiVersion": .string(route.resource.groupVersion),
                "metadata": .object(["resourceVersion": .string(String(rv))]), "items": .array(filtered),
            ]))
    }

    private func watch(_ route: Route, _ request: HTTPServerRequest) -> HTTPServerResponse {
        let fields = Self.parseSelector(request.query["fieldSelector"]).map {
            (path: $0.key.split(separator: ".").map(String.init), value: $0.value)
        }
        let (stream, continuation) = AsyncStream<ByteBuffer>.makeStream()
        let id = UUID()
        let fromRV = request.query["resourceVersion"]
        func send(_ type: String, _ obj: JSONValue) {
            var data = JSONValue.object(["type": .string(type), "object": obj]).jsonData()
            data.append(UInt8(ascii: "\n"))
            continuation.yield(ByteBuffer(bytes: data))
        }
        // The history's start when `fromRV` is older than it (the watch is refused), else nil.
        let expiredBefore = state.store.withLock { s -> Int? in
            s.stats.watches += 1
            // https://kubernetes.io/docs/reference/using-api/api-concepts/#semantics-for-watch: without a
            // resourceVersion (or "0"), existing objects come first as ADDED.
            if fromRV == nil || fromRV == "0" || fromRV == "" {
                for obj in s.list(route.resource, namespace: route.namespace)
                where FakeKubeState.Store.matches(obj, namespace: nil, fields) {
                    send("ADDED", obj)
                }
            } else if let from = fromRV.flatMap(Int.init) {
                // A specific resourceVersion: only the later changes, replayed from the history, then live ones;
                // one older than the history is answered the watch cache's way (HTTP 200, one ERROR 410 Expired).
                guard from >= s.historyStart else { return s.historyStart }
                for e in s.history where e.resourceVersion > from && e.resource == route.resource
                    && FakeKubeState.Store.matches(e.object, namespace: route.namespace, fields)
                {
                    send(e.type, e.object)
                }
            }
            s.watchers[id] = FakeKubeState.Watcher(
                resource: route.resource, namespace: route.namespace, fieldSelector: fields, continuation: continuation)
            return nil
        }
        if let historyStart = expiredBefore {
            send("ERROR", (try? JSONValue.from(KubeStatus(
                message: "too old resource version: \(fromRV ?? "") (\(historyStart + 1))", reason: "Expired", code: 410))) ?? .null)
            continuation.finish()
            return HTTPServerResponse(status: .ok, headers: ["Content-Type": "application/json"], body: .stream(stream))
        }
        let state = self.state
        let timeout = request.query["timeoutSeconds"].flatMap(Int.init)
        let timer = timeout.map { secs in
            Task {
                try? await Task.sleep(for: .seconds(secs))
                continuation.finish()
            }
        }
        continuation.onTermination = { _ in
            timer?.cancel()
            // Not here and now: this runs inside the cancellation of the consuming task, holding that task's status
            // lock, while `notify` holds the store lock and yields — which takes the same task's status lock to
            // resume it. Waiting for the store lock here deadlocked the two (seen once in a stressed suite run:
            // the gate bench's watch cancelled while a node event was yielded to it). Yields to a terminated
            // continuation are dropped, so removing the watcher a moment later is harmless.
            Task { _ = state.store.withLock { $0.watchers.removeValue(forKey: id) } }
        }
        return HTTPServerResponse(status: .ok, headers: ["Content-Type": "application/json"], body: .stream(stream))
    }

    private func create(_ route: Route, _ request: HTTPServerRequest) -> HTTPServerResponse {
        guard case .object(var obj)? = try? JSONDecoder().decode(JSONValue.self, from: Data(request.body.readableBytesView)) else {
            return Self.status(400, reason: "BadRequest", message: "the body of the request was not a JSON object")
        }
        guard case .object(var meta)? = obj["metadata"], case .string(let name)? = meta["name"], !name.isEmpty else {
            return Self.status(422, reason: "Invalid", message: "\(route.resource.kind).\(route.resource.group) is invalid: metadata.name: Required value: name is required")
        }
        if route.resource.namespaced { meta["namespace"] = .string(route.namespace ?? "default") }
        meta.removeValue(forKey: "resourceVersion")
        meta.removeValue(forKey: "uid")
        obj["metadata"] = .object(meta)
        let value = JSONValue.object(obj)
        let result: JSONValue? = state.store.withLock { s in
            let key = FakeKubeState.Store.key(route.resource, route.namespace, name)
            if s.objects[route.resource]?[key] != nil { return nil }
            return s.store(route.resource, value)
        }
        guard let result else {
            return Self.status(
                409, reason: "AlreadyExists", message: "\(route.resource.qualified) \"\(name)\" already exists",
                details: KubeStatusDetails(name: name, group: route.resource.group, kind: route.resource.rawValue))
        }
        return Self.json(201, result)
    }

    private func replace(_ route: Route, _ name: String, _ request: HTTPServerRequest) -> HTTPServerResponse {
        guard case .object(var obj)? = try? JSONDecoder().decode(JSONValue.self, from: Data(request.body.readableBytesView)),
            case .object(var meta)? = obj["metadata"]
        else {
            return Self.status(400, reason: "BadRequest", message: "the body of the request was not a JSON object with metadata")
        }
        if let n = meta["name"], n != .string(name) {
            return Self.status(400, reason: "BadRequest", message: "the name of the object (\(n)) does not match the name on the URL (\(name))")
        }
        meta["name"] = .string(name)
        if route.resource.namespaced { meta["namespace"] = .string(route.namespace ?? "default") }
        let sentRV = meta["resourceVersion"]
        obj["metadata"] = .object(meta)
        let r = route.resource
        enum Outcome { case ok(JSONValue, created: Bool), conflict, missingRV }
        let outcome: Outcome = state.store.withLock { s in
            let key = FakeKubeState.Store.key(r, route.namespace, name)
            guard let existing = s.objects[r]?[key] else {
                // kubernetes pkg/registry/coordination/lease/strategy.go: a PUT to a missing Lease creates it.
                return .ok(s.store(r, .object(obj)), created: true)
            }
            guard let sentRV, sentRV != .string("") else { return .missingRV }
            guard sentRV == existing["metadata"]?["resourceVersion"] else { return .conflict }
            return .ok(s.store(r, .object(obj)), created: false)
        }
        switch outcome {
        case .ok(let v, let created): return Self.json(created ? 201 : 200, v)
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

    private func patch(_ route: Route, _ name: String, _ request: HTTPServerRequest) -> HTTPServerResponse {
        let r = route.resource
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
            p["metadata"] = .object(m)
        }
        enum Outcome { case ok(JSONValue), notFound, conflict }
        let outcome: Outcome = state.store.withLock { s in
            s.stats.patches += 1
            let key = FakeKubeState.Store.key(r, route.namespace, name)
            guard let existing = s.objects[r]?[key] else { return .notFound }
            if let wantRV, wantRV != .null, wantRV != existing["metadata"]?["resourceVersion"] { return .conflict }
            return .ok(s.store(r, existing.merging(patch: .object(p))))
        }
        switch outcome {
        case .ok(let v): return Self.json(200, v)
        case .notFound: return notFound(r, name)
        case .conflict: return Self.conflict(r, name)
        }
    }

    private func delete(_ route: Route, _ name: String) -> HTTPServerResponse {
        let old = state.store.withLock { $0.remove(route.resource, key: FakeKubeState.Store.key(route.resource, route.namespace, name)) }
        guard let old else { return notFound(route.resource, name) }
        return Self.json(200, old)
    }

    // MARK: - eviction (docs/UPSTREAM.md#eviction)

    private func evict(_ route: Route, _ name: String, _ request: HTTPServerRequest) -> HTTPServerResponse {
        let ns = route.namespace ?? "default"
        guard let eviction = try? JSONDecoder().decode(Eviction.self, from: Data(request.body.readableBytesView)) else {
            return Self.status(400, reason: "BadRequest", message: "the body of the request is not a policy/v1 Eviction")
        }
        if let bodyName = eviction.metadata.name, bodyName != name {
            return Self.status(400, reason: "BadRequest", message: "name in URL does not match name in Eviction object")
        }
        enum Outcome { case evicted(Pod, Duration, (@Sendable (Pod) -> Void)?), notFound, refused(KubeStatus), tooMany(KubeStatus) }
        let outcome: Outcome = state.store.withLock { s in
            let key = FakeKubeState.Store.key(.pods, ns, name)
            guard let v = s.objects[.pods]?[key], let pod = try? v.decode(as: Pod.self) else { return .notFound }
            func remove() -> Outcome {
                s.stats.evictions += 1
                if s.podTerminationDelay > .zero {
                    guard case .object(var o) = v, case .object(var m)? = o["metadata"] else { return .notFound }
                    m["deletionTimestamp"] = .string(KubeTime.format(Date()))
                    o["metadata"] = .object(m)
                    _ = s.store(.pods, .object(o))
                } else {
                    _ = s.remove(.pods, key: key)
                }
                return .evicted(pod, s.podTerminationDelay, s.evictionHook)
            }
            let phase = pod.status?.phase ?? "Pending"
            if phase == "Succeeded" || phase == "Failed" || phase == "Pending" || pod.metadata.deletionTimestamp != nil {
                return remove()
            }
            let pdbs = s.list(.poddisruptionbudgets, namespace: ns).compactMap { try? $0.decode(as: PodDisruptionBudget.self) }
                .filter { $0.spec?.selector?.matches(pod.metadata.labels ?? [:]) ?? true }
            if pdbs.isEmpty { return remove() }
            if pdbs.count > 1 {
                return .tooMany(
                    KubeStatus(message: "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.", code: 500))
            }
            let pdb = pdbs[0]
            let st = s.derivedStatus(pdb)
            if !pod.isReady {
                if pdb.spec?.unhealthyPodEvictionPolicy == "AlwaysAllow" || (st.currentHealthy >= st.desiredHealthy && st.desiredHealthy > 0) {
                    return remove()
                }
            }
            if st.disruptionsAllowed <= 0 {
                s.stats.evictionRefusals += 1
                return .refused(
                    KubeStatus(
                        message: "Cannot evict pod as it would violate the pod's disruption budget.", reason: "TooManyRequests",
                        details: KubeStatusDetails(causes: [
                            KubeStatusCause(
                                reason: "DisruptionBudget",
                                message: "The disruption budget \(pdb.name) needs \(st.desiredHealthy) healthy pods and has \(st.currentHealthy) currently")
                        ]), code: 429))
            }
            return remove()
        }
        switch outcome {
        case .notFound:
            return Self.status(404, reason: "NotFound", message: "pods \"\(name)\" not found", details: KubeStatusDetails(name: name, kind: "pods"))
        case .refused(let st): return Self.json(429, st)
        case .tooMany(let st): return Self.json(500, st)
        case .evicted(let pod, let delay, let hook):
            if delay > .zero {
                let state = self.state
                Task {
                    try? await Task.sleep(for: delay)
                    state.delete(.pods, namespace: pod.namespace, name: pod.name)
                }
            }
            hook?(pod)
            return Self.json(201, KubeStatus(status: "Success", code: 201))
        }
    }

    // MARK: - discovery

    private func discovery(_ path: String) -> HTTPServerResponse? {
        let groups = Dictionary(grouping: FakeKubeResource.allCases.filter { !$0.group.isEmpty }, by: \.group)
        switch path {
        case "/version":
            return Self.json(
                200,
                .object([
                    "major": .string("1"), "minor": .string("30"), "gitVersion": .string("v1.30.4+k3s1"),
                    "gitCommit": .string("simulation"), "gitTreeState": .string("clean"),
                    "buildDate": .string("2024-08-20T00:00:00Z"), "goVersion": .string("go1.22.5"),
                    "compiler": .string("gc"), "platform": .string("linux/amd64"),
                ]))
        case "/healthz", "/readyz", "/livez":
            return .text(.ok, "ok")
        case "/api":
            return Self.json(
                200,
                .object([
                    "kind": .string("APIVersions"), "versions": .array([.string("v1")]),
                    "serverAddressByClientCIDRs": .array([
                        .object(["clientCIDR": .string("0.0.0.0/0"), "serverAddress": .string("127.0.0.1:6443")])
                    ]),
                ]))
        case "/apis":
            let list = (groups.keys.sorted() + ["policy"]).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
            return Self.json(
                200,
                .object([
                    "kind": .string("APIGroupList"), "apiVersion": .string("v1"),
                    "groups": .array(
                        list.map { g in
                            let gv = JSONValue.object(["groupVersion": .string("\(g)/v1"), "version": .string("v1")])
                            return .object(["name": .string(g), "versions": .array([gv]), "preferredVersion": gv])
                        }),
                ]))
        default:
            break
        }
        var segs = path.split(separator: "/").map(String.init)
        let group: String
        if segs.count == 2, segs[0] == "api", segs[1] == "v1" {
            group = ""
        } else if segs.count == 3, segs[0] == "apis", segs[2] == "v1" {
            group = segs[1]
        } else if segs.count == 2, segs[0] == "apis" {
            group = segs[1]
            guard groups[group] != nil || group == "policy" else { return nil }
            let gv = JSONValue.object(["groupVersion": .string("\(group)/v1"), "version": .string("v1")])
            return Self.json(
                200, .object(["kind": .string("APIGroup"), "apiVersion": .string("v1"), "name": .string(group), "versions": .array([gv]), "preferredVersion": gv]))
        } else {
            return nil
        }
        segs.removeAll()
        var resources: [JSONValue] = FakeKubeResource.allCases.filter { $0.group == group }.map { r in
            let verbs: [String] = ["create", "delete", "get", "list", "patch", "update", "watch"]
            return .object([
                "name": .string(r.rawValue), "singularName": .string(r.singular), "namespaced": .bool(r.namespaced),
                "kind": .string(r.kind), "verbs": .array(verbs.map(JSONValue.string)),
                "shortNames": .array(r.shortNames.map(JSONValue.string)),
            ])
        }
        if group == "" {
            // kubectl pkg/drain/drain.go: kubectl finds the eviction version here.
            resources.append(
                .object([
                    "name": .string("pods/eviction"), "singularName": .string(""), "namespaced": .bool(true),
                    "group": .string("policy"), "version": .string("v1"), "kind": .string("Eviction"),
                    "verbs": .array([.string("create")]),
                ]))
            resources.append(
                .object([
                    "name": .string("namespaces"), "singularName": .string("namespace"), "namespaced": .bool(false),
                    "kind": .string("Namespace"), "verbs": .array([.string("get"), .string("list")]),
                    "shortNames": .array([.string("ns")]),
                ]))
        }
        return Self.json(
            200,
            .object([
                "kind": .string("APIResourceList"), "apiVersion": .string("v1"),
                "groupVersion": .string(group.isEmpty ? "v1" : "\(group)/v1"), "resources": .array(resources),
            ]))
    }

    // MARK: - helpers

    static func parseSelector(_ text: String?) -> [(key: String, value: String)] {
        guard let text, !text.isEmpty else { return [] }
        return text.split(separator: ",").compactMap { term in
            let t = term.replacingOccurrences(of: "==", with: "=")
            let kv = t.split(separator: "=", maxSplits: 1).map(String.init)
            return kv.count == 2 ? (kv[0], kv[1]) : nil
        }
    }

    static func conflict(_ r: FakeKubeResource, _ name: String) -> HTTPServerResponse {
        // docs/UPSTREAM.md#lease/#api-errors: the API's conflict text.
        status(
            409, reason: "Conflict",
            message: "Operation cannot be fulfilled on \(r.qualified) \"\(name)\": the object has been modified; please apply your changes to the latest version and try again",
            details: KubeStatusDetails(name: name, group: r.group.isEmpty ? nil : r.group, kind: r.rawValue))
    }

    static func status(_ code: Int, reason: String?, message: String, details: KubeStatusDetails? = nil) -> HTTPServerResponse {
        json(code, KubeStatus(message: message, reason: reason, details: details, code: code))
    }

    static func json(_ code: Int, _ value: JSONValue) -> HTTPServerResponse {
        HTTPServerResponse(
            status: HTTPResponseStatus(statusCode: code), headers: ["Content-Type": "application/json"],
            body: .bytes(ByteBuffer(bytes: value.jsonData())))
    }

    static func json<T: Encodable>(_ code: Int, _ value: T) -> HTTPServerResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return .json(HTTPResponseStatus(statusCode: code), value, encoder: encoder)
    }

    static func response(for fault: FakeKubeFault) -> HTTPServerResponse {
        switch fault {
        case .internalError:
            return status(
                500, reason: "InternalError", message: "Internal error occurred: SIMULATION: injected fault",
                details: KubeStatusDetails(causes: [KubeStatusCause(message: "SIMULATION: injected fault")]))
        case .serviceUnavailable:
            return status(503, reason: "ServiceUnavailable", message: "SIMULATION: the server is currently unable to handle the request")
        case .tooManyRequests:
            return status(429, reason: "TooManyRequests", message: "SIMULATION: too many requests")
        case .tooManyRequestsPlainText(let retryAfter):
            // apiserver pkg/server/filters/priority-and-fairness.go: APF rejections are plain text with Retry-After.
            var r = HTTPServerResponse.text(.tooManyRequests, "Too many requests, please try again later.\n")
            r.headers.add(name: "Retry-After", value: "\(retryAfter)")
            return r
        }
    }
}
