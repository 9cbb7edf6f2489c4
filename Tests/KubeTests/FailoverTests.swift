import Foundation
import NK3Kube
import NK3Simulation
import Testing

/// Every k3s server serves the API: a client that knows them all keeps working when the one it uses goes down (a
/// server nk3 reboots), and moves off it ahead of time when told (`avoid(host:)`). The fake serves one endpoint per
/// simulated server on its own loopback address and refuses connections on one that is down.
@Suite("API endpoints and failover", .serialized)
struct FailoverTests {
    /// A fake with endpoints on 127.0.0.1 (the kubeconfig's server), 127.0.0.2 and 127.0.0.3.
    func withThreeServers(_ body: (FakeKubeServer, KubeClient, [URL]) async throws -> Void) async throws {
        let server = try await FakeKubeServer.start(logger: quietLogger)
        do {
            let second = try await server.addEndpoint(host: "127.0.0.2")
            let third = try await server.addEndpoint(host: "127.0.0.3")
            var config = try server.clientConfig()
            config.extraServers = ["127.0.0.2:\(second.port!)", third.absoluteString]
            try await KubeClient.withClient(config: config, options: fastOptions, logger: quietLogger) { client in
                try await body(server, client, [server.url, second, third])
            }
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
    }

    @Test("reads and writes go on when the kubeconfig's server is down")
    func failover() async throws {
        try await withThreeServers { server, client, urls in
            server.state.addNode("n1")
            #expect(client.currentServer == urls[0])
            try await server.setEndpoint(urls[0], down: true)
            #expect(!server.isUp(urls[0]))
            #expect(try await client.getNode("n1").metadata.name == "n1")
            #expect(client.currentServer == urls[1])
            #expect(try await client.cordon(node: "n1", by: "nk3", reason: "test") == .cordoned)
            // The second goes down too: the third answers.
            try await server.setEndpoint(urls[1], down: true)
            #expect(try await client.uncordonIfCordonedByNK3(node: "n1") == .uncordoned)
            #expect(client.currentServer == urls[2])
            // All down: a transport error, not a hang.
            try await server.setEndpoint(urls[2], down: true)
            let error = await #expect(throws: KubeError.self) { try await client.getNode("n1") }
            #expect(error?.code == .transport)
            try await server.setEndpoint(urls[0], down: false)
            #expect(try await client.getNode("n1").metadata.name == "n1")
        }
    }

    @Test("moveOff(apiServer:) names the server it moved to, and nil when the server was not in use")
    func moveOff() async throws {
        try await withThreeServers { server, client, urls in
            // The inventory names a server by host, host:port or URL; the one in use is the kubeconfig's.
            #expect(await client.moveOff(apiServer: "127.0.0.3") == nil)
            #expect(client.currentServer == urls[0])
            // To another server that answers /readyz (the next in line, unless it answered too slowly).
            let moved = try #require(await client.moveOff(apiServer: "127.0.0.1:\(urls[0].port!)"))
            #expect(moved != urls[0] && urls.contains(moved))
            #expect(client.currentServer == moved)
            // Every other server down: nowhere to move, the one in use stays.
            for url in urls where url != moved { try await server.setEndpoint(url, down: true) }
            #expect(await client.moveOff(apiServer: moved.absoluteString) == nil)
            #expect(client.currentServer == moved)
        }
    }

    @Test("avoid(host:) moves to another live server before the one in use goes down")
    func avoid() async throws {
        try await withThreeServers { server, client, urls in
            server.state.addNode("n1")
            try await server.setEndpoint(urls[1], down: true)  // the next in line is down: skipped
            #expect(await client.avoid(host: "127.0.0.1") == urls[2])
            let before = server.state.stats.requests
            try await server.setEndpoint(urls[0], down: true)
            #expect(try await client.getNode("n1").metadata.name == "n1")
            #expect(server.state.stats.requests == before + 1)
            #expect(await client.avoid(host: "127.0.0.9") == urls[2])  // not in use: nothing moves
        }
    }

    @Test("kubeconfig tls-server-name: the certificate is checked against that name, not the address")
    func tlsServerName() async throws {
        let server = try await FakeKubeServer.start(logger: quietLogger)
        do {
            let named = try await server.addEndpoint(host: "127.0.0.3", certificateNames: ["kubernetes.default.svc"])
            server.state.addNode("n1")
            var config = try server.clientConfig()
            config.server = named
            let plain = try KubeClient(config: config, options: fastOptions, logger: quietLogger)
            let refused = await #expect(throws: KubeError.self) { try await plain.getNode("n1") }
            #expect(refused?.message.contains("TLS") == true, "\(String(describing: refused))")
            try await plain.shutdown()
            // Through the kubeconfig file, as a user writes it.
            config.tlsServerName = "kubernetes.default.svc"
            let dir = try temporaryDirectory()
            try config.yaml().write(toFile: dir + "/config", atomically: true, encoding: .utf8)
            let loaded = try KubeConfig.load(path: dir + "/config")
            #expect(loaded.tlsServerName == "kubernetes.default.svc")
            let name = try await KubeClient.withClient(config: loaded, options: fastOptions, logger: quietLogger) { client in
                try await client.getNode("n1").metadata.name
            }
            #expect(name == "n1")
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
    }

    @Test("a k3s.yaml still naming 127.0.0.1 is explained when it cannot connect")
    func loopbackExplained() async throws {
        let server = try await FakeKubeServer.start(logger: quietLogger)
        var config = try server.clientConfig()
        await server.shutdown()
        config.server = URL(string: "https://127.0.0.1:\(server.url.port!)")!
        try await KubeClient.withClient(config: config, options: fastOptions, logger: quietLogger) { client in
            let error = await #expect(throws: KubeError.self) { try await client.getNode("n1") }
            #expect(error?.message.contains("/etc/rancher/k3s/k3s.yaml") == true)
            #expect(error?.message.contains("only works on the server itself") == true)
        }
    }
}
