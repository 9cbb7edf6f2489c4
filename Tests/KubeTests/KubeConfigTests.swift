import Foundation
import NK3Kube
import NK3Protocol
import NK3Simulation
import Testing

/// kubeconfig loading (docs/UPSTREAM.md#kubeconfig), each variant proven by a real TLS request to the fake server.
@Suite("kubeconfig loading")
struct KubeConfigTests {
    func b64(_ s: String) -> String { Data(s.utf8).base64EncodedString() }

    /// Loads with `load`, then GETs a node through it over TLS.
    func canReach(_ config: KubeConfig, _ server: FakeKubeServer) async throws -> Bool {
        try await KubeClient.withClient(config: config, options: fastOptions, logger: quietLogger) { client in
            try await client.getNode("n1").name == "n1"
        }
    }

    @Test("inline *-data (k3s.yaml shape), written by the fake server, reaches the API")
    func inlineData() async throws {
        let server = try await FakeKubeServer.start(logger: quietLogger)
        server.state.addNode("n1")
        let dir = try temporaryDirectory()
        let path = dir + "/k3s.yaml"
        try server.writeKubeconfig(to: path)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        let config = try KubeConfig.load(path: path, environment: [:])
        #expect(config.contextName == "default")
        #expect(config.clientCertificatePEM?.contains("BEGIN CERTIFICATE") == true)
        #expect(try await canReach(config, server))
        await server.shutdown()
    }

    @Test("file paths, relative to the kubeconfig's directory, and a *-data field overriding its file twin")
    func filePaths() async throws {
        let server = try await FakeKubeServer.start(logger: quietLogger)
        server.state.addNode("n1")
        let dir = try temporaryDirectory()
        try FileManager.default.createDirectory(atPath: dir + "/pki", withIntermediateDirectories: true)
        let cert = try server.ca.issueClient(name: "ops", role: .operator)
        try server.ca.certificatePEM.write(toFile: dir + "/pki/ca.crt", atomically: true, encoding: .utf8)
        try cert.certificatePEM.write(toFile: dir + "/pki/client.crt", atomically: true, encoding: .utf8)
        try cert.privateKeyPEM.write(toFile: dir + "/pki/client.key", atomically: true, encoding: .utf8)
        let yaml = """
            apiVersion: v1
            kind: Config
            clusters:
            - name: c
              cluster:
                server: \(server.url.absoluteString)
                certificate-authority: pki/ca.crt
            users:
            - name: u
              user:
                client-certificate: pki/client.crt
                client-key: pki/client.key
                client-key-data: \(b64(cert.privateKeyPEM))
            contexts:
            - name: ctx
              context: {cluster: c, user: u, namespace: apps}
            current-context: ctx
            """
        try yaml.write(toFile: dir + "/config", atomically: true, encoding: .utf8)
        let config = try KubeConfig.load(path: dir + "/config", environment: [:])
        #expect(config.namespace == "apps")
        #expect(config.clientKeyPEM == cert.privateKeyPEM)
        #expect(try await canReach(config, server))
        await server.shutdown()
    }

    @Test("bearer token and tokenFile (the file's token wins); an unknown token gets 401 .unauthorized")
    func tokens() async throws {
        let server = try await FakeKubeServer.start(logger: quietLogger)
        server.state.addNode("n1")
        server.state.addToken("file-token")
        server.state.addToken("inline-token")
        let dir = try temporaryDirectory()
        try "file-token\n".write(toFile: dir + "/token", atomically: true, encoding: .utf8)
        func yaml(_ user: String) -> String {
            """
            apiVersion: v1
            kind: Config
            clusters: [{name: c, cluster: {server: "\(server.url.absoluteString)", certificate-authority-data: \(b64(try! server.ca.certificatePEM))}}]
            users: [{name: u, user: {\(user)}}]
            contexts: [{name: x, context: {cluster: c, user: u}}]
            current-context: x
            """
        }
        let inline = try KubeConfig.parse(yaml: yaml("token: inline-token"), directory: dir)
        #expect(inline.token == "inline-token")
        #expect(try await canReach(inline, server))
        let file = try KubeConfig.parse(yaml: yaml("token: wrong, tokenFile: token"), directory: dir)
        #expect(file.token == "file-token")
        #expect(try await canReach(file, server))
        let bad = try KubeConfig.parse(yaml: yaml("token: nope"), directory: dir)
        let error = await #expect(throws: KubeError.self) { try await canReach(bad, server) }
        #expect(error?.code == .unauthorized)
        await server.shutdown()
    }

    @Test("yaml() writes what parse reads back, values YAML would misread included (quoted by Yams, not by hand)")
    func writtenRoundTrips() throws {
        var c = KubeConfig(server: URL(string: "https://10.0.0.1:6443")!, certificateAuthorityPEM: nil)
        c.token = "a: b #not a comment"
        c.namespace = "0755"
        c.tlsServerName = "kubernetes.default.svc"
        c.certificateAuthorityPEM = "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n"
        let back = try KubeConfig.parse(yaml: c.yaml(name: "on: yes"), directory: "/nonexistent")
        #expect(back.server == c.server)
        #expect(back.token == c.token)
        #expect(back.namespace == "0755")
        #expect(back.tlsServerName == c.tlsServerName)
        #expect(back.certificateAuthorityPEM == c.certificateAuthorityPEM)
        #expect(back.contextName == "on: yes")
        // No credentials at all: `user: {}`, which parses as a user without credentials.
        let bare = KubeConfig(server: URL(string: "https://10.0.0.1:6443")!, certificateAuthorityPEM: nil).yaml()
        #expect(bare.contains("user: {}"))
    }

    @Test("contexts: current-context by default, a named context on request, an unknown one refused")
    func contexts() throws {
        let yaml = """
            apiVersion: v1
            kind: Config
            clusters:
            - {name: prod, cluster: {server: "https://10.0.0.1:6443"}}
            - {name: lab, cluster: {server: "https://127.0.0.1:6443"}}
            users:
            - {name: admin, user: {token: t1}}
            contexts:
            - {name: prod, context: {cluster: prod, user: admin}}
            - {name: lab, context: {cluster: lab, user: admin, namespace: kube-system}}
            current-context: prod
            """
        #expect(try KubeConfig.parse(yaml: yaml, directory: "/").server.absoluteString == "https://10.0.0.1:6443")
        let lab = try KubeConfig.parse(yaml: yaml, directory: "/", context: "lab")
        #expect(lab.server.absoluteString == "https://127.0.0.1:6443" && lab.namespace == "kube-system")
        let error = #expect(throws: KubeError.self) { try KubeConfig.parse(yaml: yaml, directory: "/", context: "nope") }
        #expect(error?.code == .config)
        #expect(error?.message.contains("known: lab, prod") == true)
    }

    @Test("KUBECONFIG list: first file wins each whole entry and current-context; missing files skipped")
    func kubeconfigList() throws {
        let dir = try temporaryDirectory()
        try """
            apiVersion: v1
            kind: Config
            clusters: [{name: shared, cluster: {server: "https://127.0.0.1:1111"}}]
            users: [{name: u, user: {token: first}}]
            contexts: [{name: one, context: {cluster: shared, user: u}}]
            current-context: one
            """.write(toFile: dir + "/a", atomically: true, encoding: .utf8)
        try """
            apiVersion: v1
            kind: Config
            clusters: [{name: shared, cluster: {server: "https://127.0.0.1:2222"}}, {name: other, cluster: {server: "https://127.0.0.1:3333"}}]
            users: [{name: u, user: {token: second}}]
            contexts: [{name: two, context: {cluster: other, user: u}}]
            current-context: two
            """.write(toFile: dir + "/b", atomically: true, encoding: .utf8)
        let env = ["KUBECONFIG": "\(dir)/missing:\(dir)/a::\(dir)/b:\(dir)/a"]
        let one = try KubeConfig.load(environment: env)
        #expect(one.contextName == "one")
        #expect(one.server.absoluteString == "https://127.0.0.1:1111")
        #expect(one.token == "first")
        let two = try KubeConfig.load(context: "two", environment: env)
        #expect(two.server.absoluteString == "https://127.0.0.1:3333")
        #expect(two.token == "first")  // user "u" comes whole from the first file
        // --kubeconfig wins over KUBECONFIG.
        #expect(try KubeConfig.load(path: dir + "/b", environment: env).contextName == "two")
        let none = #expect(throws: KubeError.self) { try KubeConfig.load(environment: ["KUBECONFIG": "\(dir)/x:\(dir)/y"]) }
        #expect(none?.code == .config)
    }

    @Test("insecure-skip-tls-verify, http servers, exec plugins and a cert without key are refused with a clear error")
    func refusals() throws {
        func parse(cluster: String, user: String = "{token: t}") throws -> KubeConfig {
            try KubeConfig.parse(
                yaml: """
                    apiVersion: v1
                    kind: Config
                    clusters: [{name: c, cluster: \(cluster)}]
                    users: [{name: u, user: \(user)}]
                    contexts: [{name: x, context: {cluster: c, user: u}}]
                    current-context: x
                    """, directory: "/")
        }
        let insecure = #expect(throws: KubeError.self) {
            try parse(cluster: "{server: \"https://127.0.0.1:6443\", insecure-skip-tls-verify: true}")
        }
        #expect(insecure?.code == .config)
        #expect(insecure?.message.contains("never skips TLS verification") == true)
        let http = #expect(throws: KubeError.self) { try parse(cluster: "{server: \"http://127.0.0.1:8080\"}") }
        #expect(http?.message.contains("not https") == true)
        let exec = #expect(throws: KubeError.self) {
            try parse(cluster: "{server: \"https://127.0.0.1:6443\"}", user: "{exec: {command: aws}}")
        }
        #expect(exec?.message.contains("exec") == true)
        let half = #expect(throws: KubeError.self) {
            try parse(cluster: "{server: \"https://127.0.0.1:6443\"}", user: "{client-certificate-data: \(b64("x"))}")
        }
        #expect(half?.code == .config)
    }

    @Test("a server certificate from another CA is refused (TLS is always verified)")
    func wrongCA() async throws {
        let server = try await FakeKubeServer.start(logger: quietLogger)
        server.state.addNode("n1")
        var config = try server.clientConfig()
        config.certificateAuthorityPEM = try ClusterCA.create(cluster: "other").certificatePEM
        let error = await #expect(throws: KubeError.self) { try await canReach(config, server) }
        #expect(error?.code == .transport)
        #expect(error?.message.contains("certificate-authority") == true)
        await server.shutdown()
    }
}
