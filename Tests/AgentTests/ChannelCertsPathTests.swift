import Foundation
import Logging
import NK3Agent
import NK3Common
import NK3Coordinator
import NK3Protocol
import Testing
import X509

/// The first-run path as a new user walks it (issue 17 item 5): `nk3 plan`'s "no cluster CA" hint is a command that,
/// copied and run as printed with the real `nk3` binary, creates the PKI exactly where `nk3 plan` reads it; and
/// `nk3 certs revoke` records a deny-list that an agent configured with it enforces.
@Suite("Channel: nk3 certs follows the inventory; hints work when copied", .serialized, .timeLimit(.minutes(2)))
struct ChannelCertsPathTests {
    /// The built `nk3` binary (next to the test bundle or in .build/debug); nil if not built.
    static var nk3Binary: String? {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        var candidates = [dir, dir.deletingLastPathComponent()].map { $0.appendingPathComponent("nk3").path }
        candidates.append(FileManager.default.currentDirectoryPath + "/.build/debug/nk3")
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Runs `nk3 ARGS` in `cwd`; returns the exit status and stdout + stderr.
    static func nk3(_ args: [String], in cwd: String) throws -> (status: Int32, output: String) {
        let binary = try #require(nk3Binary, "build nk3 first (swift build)")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = args
        p.currentDirectoryURL = URL(fileURLWithPath: cwd)
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = ((try? SecureFiles.readAll(pipe.fileHandleForReading.fileDescriptor, path: "pipe")) ?? Data())
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// The command between backticks after "run " in `message`, split into words (no quoting needed here).
    static func hintedCommand(_ message: String) -> [String]? {
        guard let start = message.range(of: "run `"), let end = message[start.upperBound...].firstIndex(of: "`") else {
            return nil
        }
        return message[start.upperBound..<end].split(separator: " ").map(String.init)
    }

    static func writeInventory(_ dir: String, name: String) throws -> String {
        let path = dir + "/" + name
        try """
            join_address: 127.0.0.1
            join_token: not-a-real-token
            nix_channel: https://nixos.org/channels/nixos-24.05
            nodes:
              127.0.0.1:
                initiator: true
            """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("plan's hint, copied: `nk3 certs init -i INVENTORY` creates the PKI where plan reads it")
    func initHintWalksToAWorkingPlan() throws {
        let dir = try channelTempDir("certs-path")
        let inventory = try Self.writeInventory(dir, name: "lab.yaml")
        // 1. plan (its loading step) with no PKI yet: the error names a command.
        let missing = #expect(throws: CoordinatorError.self) {
            try ClusterSession.load(inventoryPath: inventory, logger: channelQuietLogger())
        }
        let hint = try #require(Self.hintedCommand(missing?.message ?? ""), "\(missing?.message ?? "")")
        #expect(hint.starts(with: ["nk3", "certs", "init", "-i"]), "\(hint)")
        // 2. run it as printed (from another directory: the inventory path in the hint is what counts).
        let (status, output) = try Self.nk3(Array(hint.dropFirst()), in: dir)
        #expect(status == 0, "\(output)")
        #expect(output.contains("cluster 'lab'"), "the inventory's cluster name (its file stem): \(output)")
        #expect(FileManager.default.fileExists(atPath: dir + "/certs/lab/ca.crt"), "\(output)")
        // 3. plan now finds the CA, the signing key and the operator certificate.
        let session = try ClusterSession.load(inventoryPath: inventory, logger: channelQuietLogger())
        #expect(session.pki.directory.hasSuffix("certs/lab"))
        // The other certs commands take -i too and use the same directory.
        let agent = try Self.nk3(["certs", "issue-agent", "-i", inventory, "node-a", "--address", "127.0.0.1"], in: "/")
        #expect(agent.status == 0, "\(agent.output)")
        #expect(FileManager.default.fileExists(atPath: dir + "/certs/lab/agents/node-a.crt"))
        // Without -i, inventory.yaml in the working directory is used, as by every other command.
        let defaulted = try Self.writeInventory(dir, name: "inventory.yaml")
        _ = defaulted
        let bare = try Self.nk3(["certs", "init"], in: dir)
        #expect(bare.status == 0, "\(bare.output)")
        #expect(FileManager.default.fileExists(atPath: dir + "/certs/inventory/ca.crt"), "\(bare.output)")
        #expect(try ClusterSession.load(inventoryPath: dir + "/inventory.yaml", logger: channelQuietLogger()).pki.directory
            .hasSuffix("certs/inventory"))
    }

    @Test("`nk3 certs revoke NAME` records serial and fingerprint; an agent with that deny-list refuses the certificate")
    func revokeThenAgentRefuses() async throws {
        let dir = try channelTempDir("certs-revoke")
        let pki = dir + "/pki"
        #expect(try Self.nk3(["certs", "init", "--dir", pki, "--cluster", "lab"], in: dir).status == 0)
        let issued = try Self.nk3(["certs", "issue-client", "--dir", pki, "mallory", "--role", "operator"], in: dir)
        #expect(issued.status == 0, "\(issued.output)")
        #expect(issued.output.contains("valid 90 days"))
        let store = PKIStore(directory: pki)
        let malloryPEM = try SecureFiles.readText(store.clientFiles(name: "mallory").certificatePath)
        let malloryKey = try SecureFiles.readText(store.clientFiles(name: "mallory").privateKeyPath)
        let cert = try Certificate(pemEncoded: malloryPEM)
        #expect(cert.notValidAfter.timeIntervalSince(cert.notValidBefore) <= 90 * 86400 + 3600)

        let revoked = try Self.nk3(["certs", "revoke", "--dir", pki, "mallory"], in: dir)
        #expect(revoked.status == 0, "\(revoked.output)")
        let entries = try store.revokedCertificateEntries()
        #expect(entries.count == 2)
        #expect(revoked.output.contains("services.nk3-agent.settings.revokedCertificates = [ \"\(entries[0])\" \"\(entries[1])\" ];"))
        #expect(!FileManager.default.fileExists(atPath: store.clientFiles(name: "mallory").certificatePath))
        let again = try Self.nk3(["certs", "revoke", "--dir", pki, "mallory"], in: dir)
        #expect(again.status != 0 && again.output.contains("no client certificate"), "\(again.output)")

        // An agent configured with the list (each form alone is enough) refuses mallory, serves the operator.
        let agentFiles = try store.issueAgent(node: "node-a", addresses: ["127.0.0.1"])
        for entry in entries {
            let config = AgentServerConfig(
                host: "127.0.0.1", port: 0, certificate: .file(agentFiles.certificatePath),
                privateKey: .file(agentFiles.privateKeyPath), clientCA: .file(store.caCertificatePath),
                signingPublicKeys: [try store.signingPublicKey()], nodeName: "node-a",
                stateDirectory: try channelTempDir("revoke-state"), revokedCertificates: [entry])
            let server = try AgentServer(config: config, engine: ChannelRecordingEngine(), logger: channelQuietLogger())
            let port = try await server.start()
            let endpoint = AgentEndpoint(host: "127.0.0.1", port: port)
            let mallory = try AgentClient(
                endpoint: endpoint, trustRoots: try store.trustRoots(),
                identity: try TLSIdentity(certificatePEM: malloryPEM, privateKeyPEM: malloryKey))
            let error = await #expect(throws: AgentClientError.self) { try await mallory.status() }
            #expect(error?.wireError?.code == .forbidden)
            #expect(error?.message.contains("revoked") == true, "\(error?.message ?? "")")
            let op = try AgentClient(
                endpoint: endpoint, trustRoots: try store.trustRoots(), identity: try store.clientIdentity(name: "operator"))
            #expect(try await op.status().hostname == "node-a")
            await server.shutdown()
        }
    }

    @Test("a deny-list pushed into the agent's config file acts at the next request, without a restart")
    func revocationReloadsWithoutRestart() async throws {
        let f = try ChannelFixture()
        let configFile = f.stateDir + "/config.json"
        try #"{"nodeName": "node-a", "revokedCertificates": []}"#.write(toFile: configFile, atomically: true, encoding: .utf8)
        var config = try f.serverConfig()
        config.revocationFile = configFile
        let server = try AgentServer(config: config, engine: f.engine, logger: channelQuietLogger())
        try await server.start()
        defer { Task { await server.shutdown() } }
        let op = try f.client(server, identity: f.operatorCert)
        let reader = try f.client(server, identity: f.readerCert)
        #expect(try await op.status().hostname == "node-a")
        let serial = RevocationList.serialHex(try Certificate(pemEncoded: f.operatorCert.certificatePEM))
        // As activation does: a new file swapped in (another inode).
        try #"{"nodeName": "node-a", "revokedCertificates": ["serial:\#(serial)"]}"#
            .write(toFile: configFile, atomically: true, encoding: .utf8)
        let error = await #expect(throws: AgentClientError.self) { try await op.status() }
        #expect(error?.message.contains("revoked") == true)
        #expect(try await reader.status().hostname == "node-a", "only the revoked certificate is refused")
        // A broken file keeps the list known so far (never fewer entries).
        try "{ not json".write(toFile: configFile, atomically: true, encoding: .utf8)
        await #expect(throws: AgentClientError.self) { try await op.status() }
    }

    @Test("a deny-list entry that is not serial:HEX or sha256:HEX stops the agent from starting, naming it")
    func badDenyListEntryIsAClearError() throws {
        let f = try ChannelFixture()
        var config = try f.serverConfig()
        config.revokedCertificates = ["serial:zz"]
        let error = #expect(throws: WireError.self) {
            _ = try AgentServer(config: config, engine: f.engine, logger: channelQuietLogger())
        }
        #expect(error?.message.contains("serial:zz") == true)
        #expect(try RevocationList(["SERIAL:0A:1b", "0a1b"]).entries == ["serial:a1b"])
    }
}
