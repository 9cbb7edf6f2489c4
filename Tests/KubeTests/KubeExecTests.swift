import Foundation
import Logging
@testable import NK3Kube
import NK3Simulation
import Testing

/// `pods/{name}/exec` over a WebSocket: the channel framing (pure), and a real session against the fake API over
/// TLS, including what the fake refuses as kube-apiserver does.
@Suite("Kube exec over WebSocket")
struct KubeExecTests {
    static let logger = Logger(label: "test.kube-exec")

    // MARK: - channel decoding

    @Test("stdout, stderr, the error channel's Success Status and v5 close messages are told apart by their first byte")
    func decodesChannels() throws {
        var d = KubeExecDecoder()
        try d.consume([1] + Array("{\"a\":".utf8))
        try d.consume([2] + Array("warn\n".utf8))
        try d.consume([1] + Array("1}".utf8))
        try d.consume([])  // empty: ignored
        try d.consume([7, 1, 2])  // unknown stream: ignored
        try d.consume([255, 0])  // v5: the peer closed stdin
        try d.consume([3] + Array(#"{"metadata":{},"status":"Success"}"#.utf8))
        let r = try d.result(negotiatedProtocol: KubeExecProtocol.v5)
        #expect(String(decoding: r.stdout, as: UTF8.self) == "{\"a\":1}")
        #expect(String(decoding: r.stderr, as: UTF8.self) == "warn\n")
        #expect(r.exitCode == 0)
        #expect(r.negotiatedProtocol == "v5.channel.k8s.io")
        #expect(d.closed == [0])
    }

    @Test("a NonZeroExitCode Failure carries the exit code in its ExitCode cause; other Failures and no Status throw")
    func exitCodes() throws {
        var d = KubeExecDecoder()
        try d.consume(
            [3]
                + Array(
                    #"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: exit status 2","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"2"}]}}"#
                        .utf8))
        #expect(try d.result().exitCode == 2)

        var failed = KubeExecDecoder()
        try failed.consume([3] + Array(#"{"status":"Failure","reason":"InternalError","message":"Internal error occurred: unable to upgrade connection: container not found (\"x\")"}"#.utf8))
        let e = #expect(throws: KubeError.self) { try failed.result() }
        #expect(e?.message.contains("container not found") == true)

        let none = KubeExecDecoder()
        #expect(throws: KubeError.self) { try none.result() }
    }

    @Test("output beyond the bound is refused, not buffered")
    func boundsOutput() throws {
        var d = KubeExecDecoder(maxOutputBytes: 8)
        try d.consume([1] + Array(repeating: 0x41, count: 5))
        #expect(throws: KubeError.self) { try d.consume([2] + Array(repeating: 0x42, count: 4)) }
    }

    @Test("the exec query names each argument as a command parameter, as kubectl sends it")
    func query() {
        let q = KubeExecProtocol.query(command: ["ceph", "status", "-f", "json"], container: nil)
        #expect(KubeClient.queryString(q) == "?command=ceph&command=status&command=-f&command=json&stdout=true&stderr=true")
    }

    // MARK: - against the fake API (real TLS and WebSocket on 127.0.0.1)

    func withFake<R: Sendable>(_ body: (FakeKubeServer, KubeClient) async throws -> R) async throws -> R {
        let server = try await FakeKubeServer.start(logger: Self.logger)
        let client = try KubeClient(config: try server.clientConfig(), logger: Self.logger)
        do {
            let r = try await body(server, client)
            try await client.shutdown()
            await server.shutdown()
            return r
        } catch {
            try? await client.shutdown()
            await server.shutdown()
            throw error
        }
    }

    func addToolbox(_ state: FakeKubeState, name: String = "rook-ceph-tools-5b6c7d-abcde", phase: String = "Running") {
        state.addNode("n1")
        state.addPod(
            namespace: "rook-ceph", name: name, node: "n1", labels: ["app": "rook-ceph-tools"],
            owner: ("ReplicaSet", "rook-ceph-tools-5b6c7d"), phase: phase)
    }

    @Test("ceph status -f json in the toolbox: a v5 session with the simulated Ceph state on stdout and exit 0")
    func cephStatusInToolbox() async throws {
        try await withFake { server, client in
            addToolbox(server.state)
            server.state.setCephHealthAsCephSees(
                health: "HEALTH_WARN", details: ["OSD_DOWN": CephHealthMessage(severity: "HEALTH_WARN", message: "1 osds down")])
            let r = try await client.exec(
                namespace: "rook-ceph", pod: "rook-ceph-tools-5b6c7d-abcde", container: nil, command: ["ceph", "status", "-f", "json"])
            #expect(r.exitCode == 0)
            #expect(r.negotiatedProtocol == KubeExecProtocol.v5)
            let report = try JSONDecoder().decode(CephStatusReport.self, from: r.stdout)
            #expect(report.health.status == "HEALTH_WARN")
            #expect(report.health.checks?["OSD_DOWN"]?.summary.message == "1 osds down")

            // Another command exits non-zero; the exit code comes through.
            let other = try await client.exec(
                namespace: "rook-ceph", pod: "rook-ceph-tools-5b6c7d-abcde", container: nil, command: ["ls"])
            #expect(other.exitCode == 127)
        }
    }

    @Test("the fake refuses a subprotocol it does not serve with the real server's bare 403 (wsstream handshake, x/net/websocket)")
    func wrongSubprotocol() async throws {
        try await withFake { server, client in
            addToolbox(server.state)
            let e = await #expect(throws: KubeError.self) {
                try await client.exec(
                    namespace: "rook-ceph", pod: "rook-ceph-tools-5b6c7d-abcde", container: nil, command: ["ceph", "status"],
                    timeout: .seconds(20), maxOutputBytes: 1 << 20, subprotocols: ["v9.channel.k8s.io"])
            }
            #expect(e?.httpStatus == 403)
            #expect(e?.code == .forbidden)
            #expect(e?.status == nil)  // no Status body: x/net/websocket writes the status line only
        }
    }

    @Test("refusals before the upgrade: 404 missing pod, 400 no host, 400 plain GET, 403 RBAC; after it: a pod not Running")
    func refusals() async throws {
        try await withFake { server, client in
            let missing = await #expect(throws: KubeError.self) {
                try await client.exec(namespace: "rook-ceph", pod: "nope", container: nil, command: ["ceph", "status"])
            }
            #expect(missing?.code == .notFound)
            #expect(missing?.message.contains(#"pods "nope" not found"#) == true, "\(missing?.message ?? "")")

            server.state.put(
                .pods,
                Pod(
                    metadata: ObjectMeta(name: "pending", namespace: "rook-ceph"),
                    spec: PodSpec(containers: [.object(["name": .string("c")])]), status: PodStatus(phase: "Pending")))
            let noHost = await #expect(throws: KubeError.self) {
                try await client.exec(namespace: "rook-ceph", pod: "pending", container: nil, command: ["ceph", "status"])
            }
            #expect(noHost?.httpStatus == 400)
            #expect(noHost?.message.contains("does not have a host assigned") == true)

            addToolbox(server.state)
            let plain = await #expect(throws: KubeError.self) {
                let _: JSONValue = try await client.get(
                    "/api/v1/namespaces/rook-ceph/pods/rook-ceph-tools-5b6c7d-abcde/exec", query: [("command", "ceph")])
            }
            #expect(plain?.httpStatus == 400)
            #expect(plain?.message.contains("Upgrade request required") == true)

            addToolbox(server.state, name: "rook-ceph-tools-5b6c7d-stopped", phase: "Failed")
            let stopped = await #expect(throws: KubeError.self) {
                try await client.exec(namespace: "rook-ceph", pod: "rook-ceph-tools-5b6c7d-stopped", container: nil, command: ["ceph", "status"])
            }
            #expect(stopped?.message.contains("container not found") == true, "\(stopped?.message ?? "")")

            server.state.setExecForbidden()
            let forbidden = await #expect(throws: KubeError.self) {
                try await client.exec(namespace: "rook-ceph", pod: "rook-ceph-tools-5b6c7d-abcde", container: nil, command: ["ceph", "status"])
            }
            #expect(forbidden?.code == .forbidden)
            #expect(forbidden?.message.contains(#"cannot create resource "pods/exec""#) == true)
        }
    }
}

extension KubeExecTests {
    @Test("exec takes the client's other endpoints when one is down, and honours tls-server-name")
    func endpointsAndServerName() async throws {
        let server = try await FakeKubeServer.start(logger: Self.logger)
        do {
            addToolbox(server.state)
            server.state.setCephHealthAsCephSees(health: "HEALTH_OK")
            let second = try await server.addEndpoint(host: "127.0.0.2")
            var config = try server.clientConfig()
            config.extraServers = [second.absoluteString]
            try await KubeClient.withClient(config: config, logger: Self.logger) { client in
                try await server.setEndpoint(server.url, down: true)
                let r = try await client.exec(
                    namespace: "rook-ceph", pod: "rook-ceph-tools-5b6c7d-abcde", container: nil, command: ["ceph", "status", "-f", "json"])
                #expect(r.exitCode == 0)
                #expect(client.currentServer == second)
                try await server.setEndpoint(server.url, down: false)
            }

            // A certificate naming only kubernetes.default.svc: refused by address, accepted with tls-server-name.
            let named = try await server.addEndpoint(host: "127.0.0.3", certificateNames: ["kubernetes.default.svc"])
            var direct = try server.clientConfig()
            direct.server = named
            try await KubeClient.withClient(config: direct, logger: Self.logger) { client in
                let refused = await #expect(throws: KubeError.self) {
                    try await client.exec(namespace: "rook-ceph", pod: "rook-ceph-tools-5b6c7d-abcde", container: nil, command: ["ceph", "status", "-f", "json"])
                }
                #expect(refused?.message.contains("TLS") == true, "\(String(describing: refused))")
            }
            direct.tlsServerName = "kubernetes.default.svc"
            try await KubeClient.withClient(config: direct, logger: Self.logger) { client in
                let r = try await client.exec(
                    namespace: "rook-ceph", pod: "rook-ceph-tools-5b6c7d-abcde", container: nil, command: ["ceph", "status", "-f", "json"])
                #expect(r.exitCode == 0)
            }
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
    }
}
