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

    /// Answers one request, with the `Date` header every kube-apiserver answer carries (Go net/http sets it,
    /// net/http/server.go), on the simulated cluster's clock (`FakeKubeState.setClockSkew`).
    public func handle(_ request: HTTPServerRequest) async -> HTTPServerResponse {
        var response = await answer(request)
        response.headers.replaceOrAdd(name: "Date", value: HTTPDate.format(state.clusterNow()))
        return response
    }

    private func answer(_ request: HTTPServerRequest) async -> HTTPServerResponse {
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
        case (.GET, let name?, "status") where route.resource.hasStatus: return get(route, name)
        case (.POST, nil, nil): return create(route, request)
        case (.PUT, let name?, nil): return replace(route, name, request, status: false)
        case (.PUT, let name?, "status") where route.resource.hasStatus: return replace(route, name, request, status: true)
        case (.PATCH, let name?, nil): return patch(route, name, request, status: false)
        case (.PATCH, let name?, "status") where route.resource.hasStatus: return patch(route, name, request, status: true)
        case (.DELETE, let name?, nil): return delete(route, name, request)
        case (.POST, let name?, "eviction") where route.resource == .pods: return evict(route, name, request)
        case (.GET, let name?, "exec") where route.resource == .pods, (.POST, let name?, "exec") where route.resource == .pods:
            // Reached only when the WebSocket upgrade was declined (FakeKubeExec.swift): the refusal.
            switch execOutcome(request, namespace: route.namespace ?? "default", pod: name) {
            case .refuse(let response): return response
            case .accept: return Self.status(400, reason: "BadRequest", message: "Upgrade request required")
            }
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

    func notFound(_ r: FakeKubeResource, _ name: String) -> HTTPServerResponse {
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

    /// A list, in pages when `limit` is given: `metadata.continue` names where the next page starts and
    /// `remainingItemCount` how many are left (kubernetes/website reference/using-api/api-concepts.md "Retrieving
    /// large results sets in chunks"; kubectl drain lists with limit=500). SIMULATION: later pages show the objects as
    /// they are now, not at the first page's snapshot; a token older than the watch history is 410 Expired, as a
    /// compacted one is on a real server.
    private func list(_ route: Route, _ request: HTTPServerRequest) -> HTTPServerResponse {
        let fields = Self.parseSelector(request.query["fieldSelector"])
        let labels = Self.parseSelector(request.query["labelSelector"])
        let limit = request.query["limit"].flatMap(Int.init).flatMap { $0 > 0 ? $0 : nil }
        var after: String? = nil
        var snapshot: Int? = nil
        if let token = request.query["continue"], !token.isEmpty {
            guard let c = ContinueToken(token) else {
                return Self.status(400, reason: "BadRequest", message: "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
            }
            after = c.start
            snapshot = c.resourceVersion
        }
        let (items, rv, expired) = state.store.withLock { s in
            (s.list(route.resource, namespace: route.namespace), s.resourceVersion, snapshot.map { $0 < s.historyStart } ?? false)
        }
        if expired {
            return Self.status(
                410, reason: "Expired",
                message: "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.")
        }
        var filtered = items.filter { obj in
            FakeKubeState.Store.matches(obj, namespace: nil, fields.map { (path: $0.key.split(separator: ".").map(String.init), value: $0.value) })
                && labels.allSatisfy { obj["metadata"]?["labels"]?[$0.key] == .string($0.value) }
        }
        if let after { filtered.removeAll { FakeKubeState.Store.key(route.resource, $0) <= after } }
        var meta: [String: JSONValue] = ["resourceVersion": .string(String(snapshot ?? rv))]
        if let limit, filtered.count > limit {
            let rest = filtered.count - limit
            filtered = Array(filtered.prefix(limit))
            let last = FakeKubeState.Store.key(route.resource, filtered[limit - 1])
            meta["continue"] = .string(ContinueToken(resourceVersion: snapshot ?? rv, start: last).encoded)
            meta["remainingItemCount"] = .number(Double(rest))
        }
        return Self.json(
            200,
            .object([
                "kind": .string(route.resource.kind + "List"), "apiVersion": .string(route.resource.groupVersion),
                "metadata": .object(meta), "items": .array(filtered),
            ]))
    }

    /// The fake's continue token: base64 of `{"rv":…,"start":…}` (opaque to clients, like the real one).
    struct ContinueToken {
        var resourceVersion: Int
        var start: String
        init(resourceVersion: Int, start: String) {
            self.resourceVersion = resourceVersion
            self.start = start
        }
        init?(_ token: String) {
            guard let data = Data(base64Encoded: token), let v = try? JSONDecoder().decode(JSONValue.self, from: data),
                case .number(let rv)? = v["rv"], case .string(let start)? = v["start"]
            else { return nil }
            self.init(resourceVersion: Int(rv), start: start)
        }
        var encoded: String {
            JSONValue.object(["rv": .number(Double(resourceVersion)), "start": .string(start)]).jsonData().base64EncodedString()
        }
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
