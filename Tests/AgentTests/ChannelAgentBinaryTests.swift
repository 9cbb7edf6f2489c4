import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import NK3Agent
import NK3Common
import NK3Coordinator
import NK3Protocol
import Testing
import X509

/// `PUT /v1/agent-binary/SHA256` over real mTLS: a streamed upload authorized by a signed `stageAgentBinary`
/// envelope, kept only when its size and SHA-256 are exactly what the envelope names; and `ClusterAgents`, which
/// uploads the inventory's agent binary before the first apply whose `nk3-agent.nix` names it.
@Suite("Channel: agent binary upload", .timeLimit(.minutes(2)))
struct ChannelAgentBinaryTests {
    /// An ELF-looking binary of `size` bytes (larger than the 4 MiB body limit of every other request).
    static func binary(size: Int = 6 * 1024 * 1024 + 123, seed: UInt8 = 7) -> Data {
        var d = Data([0x7f, 0x45, 0x4c, 0x46])
        d.append(Data((0..<(size - 4)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) }))
        return d
    }

    static func sha(_ d: Data) -> String { Hex.lowercase(SHA256.hash(data: d)) }

    func envelope(_ fixture: ChannelFixture, sha256: String, size: Int, serial: UInt64) throws -> SignedEnvelope {
        try fixture.signer.sign(
            .stageAgentBinary(StageAgentBinaryCommand(sha256: sha256, size: size)), node: ChannelFixture.node,
            serial: serial, now: Date(), validity: 300)
    }

    @Test("an upload larger than the body limit lands under its digest, 0755, byte for byte; a replay of its envelope is refused")
    func uploadLandsUnderItsDigest() async throws {
        let fixture = try ChannelFixture()
        let server = try await fixture.startServer()
        defer { Task { await server.shutdown() } }
        let client = try fixture.client(server, identity: fixture.operatorCert)
        let data = Self.binary()
        let sha = Self.sha(data)
        #expect(try await client.agentBinaryPresence(sha256: sha).present == false)
        // Only a digest names a binary.
        await #expect {
            _ = try await client.agentBinaryPresence(sha256: "..")
        } throws: { ($0 as? AgentClientError)?.wireError?.code == .malformed }

        let env = try envelope(fixture, sha256: sha, size: data.count, serial: 1_000_001)
        let answer = try await client.uploadAgentBinary(data, sha256: sha, envelope: env)
        let path = fixture.stateDir + "/bin/nk3-agent-" + sha
        #expect(answer == AgentBinaryPresence(sha256: sha, present: true, path: path))
        #expect(FileManager.default.contents(atPath: path) == data)
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o755)
        #expect(try await client.agentBinaryPresence(sha256: sha) == AgentBinaryPresence(sha256: sha, present: true, path: path))
        // The reader role may ask, not upload.
        let reader = try fixture.client(server, identity: fixture.readerCert)
        #expect(try await reader.agentBinaryPresence(sha256: sha).present)

        // The same envelope again: its serial was taken.
        await #expect {
            _ = try await client.uploadAgentBinary(data, sha256: sha, envelope: env)
        } throws: { ($0 as? AgentClientError)?.wireError?.code == .replayedSerial }
        // No command reached the engine: an upload is not an apply.
        #expect(fixture.engine.handledSerials.isEmpty)
    }

    @Test("bytes that are not what the envelope names are not kept (nothing left behind); readers may not upload")
    func wrongBytesAreRefused() async throws {
        let fixture = try ChannelFixture()
        let server = try await fixture.startServer()
        defer { Task { await server.shutdown() } }
        let client = try fixture.client(server, identity: fixture.operatorCert)
        let data = Self.binary(size: 64 * 1024)
        let other = Self.binary(size: 64 * 1024, seed: 9)
        let sha = Self.sha(data)

        await #expect {
            _ = try await client.uploadAgentBinary(other, sha256: sha, envelope: try envelope(fixture, sha256: sha, size: other.count, serial: 1_000_001))
        } throws: { error in
            let wire = (error as? AgentClientError)?.wireError
            return wire?.code == .malformed && wire?.message.contains("nothing was kept") == true
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: fixture.stateDir + "/bin").isEmpty, "no binary, no temporary file")

        let reader = try fixture.client(server, identity: fixture.readerCert)
        await #expect {
            _ = try await reader.uploadAgentBinary(data, sha256: sha, envelope: try envelope(fixture, sha256: sha, size: data.count, serial: 1_000_002))
        } throws: { ($0 as? AgentClientError)?.wireError?.code == .forbidden }
        #expect(try await client.agentBinaryPresence(sha256: sha).present == false)
    }

    @Test("the envelope must be a stageAgentBinary for this path and length; one posted to /v1/envelopes is refused without taking its serial")
    func envelopeMustMatchTheRequest() async throws {
        let fixture = try ChannelFixture()
        let server = try await fixture.startServer()
        defer { Task { await server.shutdown() } }
        let client = try fixture.client(server, identity: fixture.operatorCert)
        let data = Self.binary(size: 4096)
        let sha = Self.sha(data)

        // Another digest in the envelope than in the path.
        let wrongDigest = try envelope(fixture, sha256: Self.sha(Data("x".utf8)), size: data.count, serial: 1_000_001)
        await #expect {
            _ = try await client.uploadAgentBinary(data, sha256: sha, envelope: wrongDigest)
        } throws: { ($0 as? AgentClientError)?.wireError?.code == .malformed }
        // Another command.
        let reboot = try fixture.envelope(serial: 1_000_002)
        await #expect {
            _ = try await client.uploadAgentBinary(data, sha256: sha, envelope: reboot)
        } throws: { ($0 as? AgentClientError)?.wireError?.code == .malformed }
        // The upload's envelope to the command endpoint: refused, and its serial is still free.
        let ticket = try envelope(fixture, sha256: sha, size: data.count, serial: 1_000_003)
        await #expect {
            _ = try await client.submit(ticket)
        } throws: { ($0 as? AgentClientError)?.wireError?.code == .malformed }
        #expect(try await client.uploadAgentBinary(data, sha256: sha, envelope: ticket).present)
        #expect(fixture.engine.handledSerials.isEmpty)
    }

    @Test("a request without the envelope header, or from no operator, is refused before its body is read")
    func refusedAtTheHead() async throws {
        let fixture = try ChannelFixture()
        let server = try AgentServer(config: try fixture.serverConfig(), engine: fixture.engine, logger: channelQuietLogger())
        let sha = Self.sha(Data("a".utf8))
        let op = try Certificate(pemEncoded: fixture.operatorCert.certificatePEM)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Length", value: "1")
        let bare = HTTPServerRequest(method: .PUT, uri: "/v1/agent-binary/\(sha)", headers: headers, clientCertificate: op)
        guard case .refuse(let r1) = await server.uploadDecision(for: bare) else {
            Issue.record("no envelope header: not refused")
            return
        }
        #expect(r1.status == .badRequest)
        let anonymous = HTTPServerRequest(method: .PUT, uri: "/v1/agent-binary/\(sha)", headers: headers)
        guard case .refuse(let r2) = await server.uploadDecision(for: anonymous) else {
            Issue.record("no client certificate: not refused")
            return
        }
        #expect(r2.status == .forbidden)
        // Everything else is read whole, as before.
        guard case .buffer = await server.uploadDecision(for: HTTPServerRequest(method: .POST, uri: "/v1/envelopes", clientCertificate: op)) else {
            Issue.record("POST /v1/envelopes streamed")
            return
        }
    }

    @Test("ClusterAgents uploads the inventory's binary before the first apply naming it, then never again")
    func clusterAgentsUploadsBeforeTheApply() async throws {
        let fixture = try ChannelFixture()
        let server = try await fixture.startServer()
        defer { Task { await server.shutdown() } }
        let client = try fixture.client(server, identity: fixture.operatorCert)
        let dir = try channelTempDir("local-binary")
        let data = Self.binary(size: 5 * 1024 * 1024)
        try data.write(to: URL(fileURLWithPath: dir + "/nk3-agent"))
        let binary = try LocalAgentBinary(path: dir + "/nk3-agent")
        let agents = ClusterAgents(clients: [ChannelFixture.node: client], signer: fixture.signer, agentBinary: binary)

        // A bundle whose nk3-agent.nix names another binary (or none) uploads nothing.
        _ = try await agents.submit(node: ChannelFixture.node, command: .apply(ApplyBundle(files: ["configuration.nix": "{ }", "nk3-agent.nix": "{ }"], action: .switch)))
        #expect(try await client.agentBinaryPresence(sha256: binary.sha256).present == false)

        let agentNix = AgentNix.render(
            nodeName: ChannelFixture.node, port: 7443, signingPublicKeys: [fixture.signingPublicKeyBase64], confirmTimeoutSeconds: 600,
            binary: binary.nixBinary)
        #expect(agentNix.contains(AgentNix.binaryPath(sha256: binary.sha256)) && agentNix.contains("sha256 = \"\(binary.sha256)\""))
        let bundle = ApplyBundle(files: ["configuration.nix": "{ }", "nk3-agent.nix": agentNix], action: .switch)
        _ = try await agents.submit(node: ChannelFixture.node, command: .apply(bundle))
        let path = fixture.stateDir + "/bin/nk3-agent-" + binary.sha256
        #expect(FileManager.default.contents(atPath: path) == data)
        let mtime = try FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date

        _ = try await agents.submit(node: ChannelFixture.node, command: .apply(bundle))
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date == mtime, "not uploaded again")
        // Three applies reached the engine, in increasing serials (the upload took one between the first two).
        let serials = fixture.engine.handledSerials
        #expect(serials.count == 3 && serials == serials.sorted())
    }

    @Test("a debug agent (with test kill points) or a non-ELF file is refused as the inventory's agent binary")
    func localBinaryChecks() throws {
        #expect(throws: CoordinatorError.self) { try LocalAgentBinary(path: "/x", data: Data("#!/bin/sh\n".utf8)) }
        var debug = Self.binary(size: 4096)
        debug.append(Data("NK3_AGENT_TEST_KILL_AT".utf8))
        #expect(throws: CoordinatorError.self) { try LocalAgentBinary(path: "/x", data: debug) }
        #expect(try LocalAgentBinary(path: "/x", data: Self.binary(size: 4096)).sha256.count == 64)
    }
}
