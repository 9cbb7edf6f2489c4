import Foundation
import NIOCore
import NIOHTTP1
import NK3Common
import NK3Kube
import NK3Simulation
import Testing

/// The fake API is as strict as kube-apiserver where nk3 could tell the difference: each test here failed against
/// the fake's earlier, kinder behaviour (dryRun ignored, any JSON stored, status patchable, a PDB without selector
/// covering every pod, no paging, no taint, no managedFields).
@Suite("Fake API strictness")
struct FakeKubeStrictTests {
    let state = FakeKubeState()
    var router: FakeKubeRouter { FakeKubeRouter(state: state, requireAuthentication: false) }

    /// One request straight to the router: (HTTP status, JSON body).
    func call(
        _ method: HTTPMethod, _ uri: String, _ body: String? = nil,
        contentType: String = "application/strategic-merge-patch+json", userAgent: String = "nk3/kube-client"
    ) async -> (Int, JSONValue) {
        var headers: HTTPHeaders = ["User-Agent": userAgent]
        if body != nil { headers.add(name: "Content-Type", value: method == .PATCH ? contentType : "application/json") }
        let response = await router.handle(
            HTTPServerRequest(method: method, uri: uri, headers: headers, body: ByteBuffer(string: body ?? "")))
        guard case .bytes(let bytes) = response.body else { return (Int(response.status.code), .null) }
        let json = (try? JSONDecoder().decode(JSONValue.self, from: Data(bytes.readableBytesView))) ?? .null
        return (Int(response.status.code), json)
    }

    @Test("dryRun=All persists nothing: patch, create, delete and eviction")
    func dryRun() async throws {
        state.addNode("n1")
        state.addPod(name: "web-1", node: "n1")
        let rv = state.node("n1")?.metadata.resourceVersion
        let (code, patched) = await call(.PATCH, "/api/v1/nodes/n1?dryRun=All", #"{"spec":{"unschedulable":true}}"#)
        #expect(code == 200)
        #expect(patched["spec"]?["unschedulable"] == .bool(true))  // the answer shows what would be stored…
        #expect(state.node("n1")?.isUnschedulable == false)  // …but nothing was
        #expect(state.node("n1")?.metadata.resourceVersion == rv)

        let lease = #"{"metadata":{"name":"l1"},"spec":{"holderIdentity":"a","renewTime":"2024-05-01T12:00:00.000000Z"}}"#
        #expect(await call(.POST, "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases?dryRun=All", lease).0 == 201)
        #expect(state.object(.leases, namespace: "kube-system", name: "l1") == nil)

        #expect(await call(.DELETE, "/api/v1/namespaces/default/pods/web-1?dryRun=All").0 == 200)
        let eviction = #"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"web-1","namespace":"default"}}"#
        #expect(await call(.POST, "/api/v1/namespaces/default/pods/web-1/eviction?dryRun=All", eviction).0 == 201)
        #expect(state.pod(name: "web-1") != nil)
        #expect(state.stats.evictions == 0)

        let (bad, status) = await call(.PATCH, "/api/v1/nodes/n1?dryRun=Yes", #"{"spec":{"unschedulable":true}}"#)
        #expect(bad == 422)
        #expect(status["reason"] == .string("Invalid"))
    }

    @Test("a wrongly typed field or a MicroTime without exactly six fractional digits is refused with a Status")
    func decoding() async throws {
        let path = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"
        func lease(_ spec: String) -> String { #"{"metadata":{"name":"l1"},"spec":"# + spec + "}" }
        let (code, status) = await call(.POST, path, lease(#"{"leaseDurationSeconds":"15"}"#))
        #expect(code == 400)
        #expect(status["kind"] == .string("Status"))
        #expect(status["status"] == .string("Failure"))
        #expect(status["reason"] == .string("BadRequest"))
        #expect(status["code"] == .number(400))
        for bad in ["2024-05-01T12:00:00Z", "2024-05-01T12:00:00.123Z", "2024-05-01T12:00:00.1234567Z", "yesterday"] {
            #expect(await call(.POST, path, lease(#"{"renewTime":""# + bad + #""}"#)).0 == 400, "\(bad)")
        }
        #expect(await call(.POST, path, lease(#"{"renewTime":"2024-05-01T12:00:00.123456Z","leaseDurationSeconds":15}"#)).0 == 201)
        #expect(state.object(.leases, namespace: "kube-system", name: "l1") != nil)

        state.addNode("n1")
        let (pcode, pstatus) = await call(.PATCH, "/api/v1/nodes/n1", #"{"spec":{"unschedulable":"true"}}"#)
        #expect(pcode == 422)
        #expect(pstatus["reason"] == .string("Invalid"))
        guard case .array(let causes)? = pstatus["details"]?["causes"], let cause = causes.first else {
            Issue.record("no causes in \(pstatus)")
            return
        }
        #expect(cause["field"] == .string("patch"))
        #expect(state.node("n1")?.isUnschedulable == false)
    }

    @Test("PATCH of a Node leaves its status alone; PATCH of /status changes only the status")
    func statusSubresource() async throws {
        state.addNode("n1")
        let notReady = #"{"status":{"conditions":[{"type":"Ready","status":"False","reason":"KubeletNotReady"}]}}"#
        #expect(await call(.PATCH, "/api/v1/nodes/n1", notReady).0 == 200)
        #expect(state.node("n1")?.isReady == true)
        let both = #"{"spec":{"unschedulable":true},"status":{"conditions":[{"type":"Ready","status":"False","reason":"KubeletNotReady"}]}}"#
        #expect(await call(.PATCH, "/api/v1/nodes/n1/status", both, contentType: "application/merge-patch+json").0 == 200)
        #expect(state.node("n1")?.isReady == false)
        #expect(state.node("n1")?.isUnschedulable == false)
    }

    @Test("a PDB without a selector covers no pod; an empty selector covers every pod in its namespace")
    func pdbSelector() async throws {
        state.addNode("n1")
        state.addPod(name: "web-1", node: "n1", labels: ["app": "web"])
        state.put(
            .poddisruptionbudgets,
            PodDisruptionBudget(metadata: ObjectMeta(name: "none", namespace: "default", generation: 1), spec: PodDisruptionBudgetSpec(minAvailable: .int(1))))
        #expect(state.podDisruptionBudget(name: "none")?.status?.expectedPods == 0)
        let eviction = #"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"web-1","namespace":"default"}}"#
        #expect(await call(.POST, "/api/v1/namespaces/default/pods/web-1/eviction?dryRun=All", eviction).0 == 201)
        state.put(
            .poddisruptionbudgets,
            PodDisruptionBudget(
                metadata: ObjectMeta(name: "all", namespace: "default", generation: 1),
                spec: PodDisruptionBudgetSpec(minAvailable: .int(1), selector: LabelSelector())))
        #expect(state.podDisruptionBudget(name: "all")?.status?.expectedPods == 1)
        #expect(await call(.POST, "/api/v1/namespaces/default/pods/web-1/eviction", eviction).0 == 429)
    }

    @Test("lists come in pages with limit and continue")
    func paging() async throws {
        for i in 1...5 { state.addPod(name: "p\(i)", node: "n1") }
        var names: [String] = []
        var uri = "/api/v1/pods?limit=2"
        var pages = 0
        while true {
            let (code, page) = await call(.GET, uri)
            #expect(code == 200)
            pages += 1
            guard case .array(let items)? = page["items"] else { break }
            #expect(items.count <= 2)
            names += items.compactMap { if case .string(let n)? = $0["metadata"]?["name"] { return n }; return nil }
            guard case .string(let token)? = page["metadata"]?["continue"] else { break }
            uri = "/api/v1/pods?limit=2&continue=" + KubeClientTestsSupport.percentEncode(token)
        }
        #expect(pages == 3)
        #expect(names == ["p1", "p2", "p3", "p4", "p5"])
        #expect(await call(.GET, "/api/v1/pods?limit=2&continue=garbage").0 == 400)
    }

    @Test("the node-lifecycle controller's step adds and removes the unschedulable taint after a cordon")
    func unschedulableTaint() async throws {
        state.addNode("n1")
        #expect(await call(.PATCH, "/api/v1/nodes/n1", #"{"spec":{"unschedulable":true}}"#).0 == 200)
        func taints() -> [String] { state.node("n1")?.spec?.taints?.map(\.key) ?? [] }
        #expect(taints().isEmpty)  // asynchronous: not part of the cordon itself
        #expect(state.runNodeLifecyclePass() == ["n1"])
        #expect(taints() == [FakeKubeState.unschedulableTaintKey])
        #expect(await call(.PATCH, "/api/v1/nodes/n1", #"{"spec":{"unschedulable":null}}"#).0 == 200)
        #expect(taints() == [FakeKubeState.unschedulableTaintKey])
        state.runNodeLifecyclePass()
        #expect(taints().isEmpty)
    }

    @Test("managedFields record who set spec.unschedulable, by fieldManager or User-Agent")
    func managedFields() async throws {
        state.addNode("n1")
        #expect(await call(.PATCH, "/api/v1/nodes/n1", #"{"spec":{"unschedulable":true}}"#, userAgent: "kubectl/v1.30.4 (linux/amd64) kubernetes/abc").0 == 200)
        #expect(Self.owners(state.object(.nodes, name: "n1"), ["spec", "unschedulable"]) == ["kubectl"])
        // nk3 writing only its annotation does not take the field over.
        #expect(await call(.PATCH, "/api/v1/nodes/n1?fieldManager=nk3", #"{"metadata":{"annotations":{"nk3.io/x":"y"}}}"#).0 == 200)
        #expect(Self.owners(state.object(.nodes, name: "n1"), ["spec", "unschedulable"]) == ["kubectl"])
        #expect(Self.owners(state.object(.nodes, name: "n1"), ["metadata", "annotations", "nk3.io/x"]) == ["nk3"])
        // Setting it takes it over; removing it leaves no owner.
        #expect(await call(.PATCH, "/api/v1/nodes/n1?fieldManager=nk3", #"{"spec":{"unschedulable":null}}"#).0 == 200)
        #expect(Self.owners(state.object(.nodes, name: "n1"), ["spec", "unschedulable"]).isEmpty)
        #expect(await call(.PATCH, "/api/v1/nodes/n1?fieldManager=nk3", #"{"spec":{"unschedulable":true}}"#).0 == 200)
        #expect(Self.owners(state.object(.nodes, name: "n1"), ["spec", "unschedulable"]) == ["nk3"])
    }

    /// The managers whose FieldsV1 set holds `path`.
    static func owners(_ object: JSONValue?, _ path: [String]) -> [String] {
        guard case .array(let entries)? = object?["metadata"]?["managedFields"] else { return [] }
        return entries.compactMap { e in
            var v: JSONValue? = e["fieldsV1"]
            for p in path { v = v?["f:" + p] }
            guard v != nil, case .string(let m)? = e["manager"] else { return nil }
            return m
        }
    }

    @Test("Rook refreshes the CephCluster status only every interval (60 s by default), in whole seconds")
    func rookInterval() async throws {
        let t0 = Date(timeIntervalSince1970: 1_714_564_800.75)
        state.setCephHealthAsCephSees(health: "HEALTH_WARN")
        #expect(state.runRookStatusCheck(now: t0))
        state.setCephHealthAsCephSees(health: "HEALTH_OK")
        #expect(!state.runRookStatusCheck(now: t0.addingTimeInterval(59)))
        let cluster: CephCluster? = state.get(.cephclusters, namespace: "rook-ceph", name: "rook-ceph")
        #expect(cluster?.status?.ceph?.health == "HEALTH_WARN")
        #expect(cluster?.status?.ceph?.lastChecked == "2024-05-01T12:00:00Z")
        #expect(state.runRookStatusCheck(now: t0.addingTimeInterval(60)))
        let later: CephCluster? = state.get(.cephclusters, namespace: "rook-ceph", name: "rook-ceph")
        #expect(later?.status?.ceph?.health == "HEALTH_OK")
        #expect(later?.status?.ceph?.lastChecked == "2024-05-01T12:01:00Z")
    }
}

enum KubeClientTestsSupport {
    static func percentEncode(_ s: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
    }
}
