import Crypto
import Foundation
import NIOCore
import NIOSSL
import NK3Agent
import NK3Common
import NK3Coordinator
import NK3Protocol
import Testing

/// The agent ↔ coordinator channel over real mutual TLS 1.3 on 127.0.0.1, with a PKI minted per test.
@Suite("Channel: mTLS, roles and signed envelopes", .timeLimit(.minutes(2)))
struct ChannelTests {
    // MARK: roles

    @Test func operatorGetsStatusWithPersistedSerial() async throws {
        let f = try ChannelFixture()
        let server = try await f.startServer()
        let client = try f.client(server, identity: f.operatorCert)

        let status = try await client.status()
        #expect(status.hostname == "node-a")
        // The server, not the engine, owns lastAcceptedSerial (engine says 999999).
        #expect(status.lastAcceptedSerial == nil)

        _ = try await client.submit(try f.envelope(serial: 7))
        #expect(try await client.status().lastAcceptedSerial == 7)
        #expect(try await client.files().files == ["configuration.nix": "{ }"])
        #expect(try await client.operation(id: "op-1").logTail == "built")
        #expect(try await client.metrics().contains("nk3_agent_envelopes_total{result=\"accepted\"} 1"))
        await server.shutdown()
    }

    @Test func unknownOperationIsNotFound() async throws {
        let f = try ChannelFixture()
        let server = try await f.startServer()
        let client = try f.client(server, identity: f.readerCert)
        let error = await #expect(throws: AgentClientError.self) { try await client.operation(id: "nope") }
        #expect(error?.code == .wire)
        #expect(error?.wireError?.code == .notFound)
        #expect(error?.httpStatus == 404)
        await server.shutdown()
    }

    @Test func readerGetsStatusButIsForbiddenToSubmit() async throws {
        let f = try ChannelFixture()
        let server = try await f.startServer()
        let client = try f.client(server, identity: f.readerCert)

        #expect(try await client.status().hostname == "node-a")
        let error = await #expect(throws: AgentClientError.self) { try await client.submit(try f.envelope(serial: 1)) }
        #expect(error?.code == .wire)
        #expect(error?.wireError?.code == .forbidden)
        #expect(error?.httpStatus == 403)
        #expect(f.engine.handledSerials.isEmpty)
        #expect(f.serialFileBytes == nil)
        await server.shutdown()
    }

    @Test("a reader may not read file contents (they can hold the k3s token); it keeps the digests in status")
    func readerIsForbiddenFileContents() async throws {
        let f = try ChannelFixture()
        let server = try await f.startServer()
        let client = try f.client(server, identity: f.readerCert)
        let error = await #expect(throws: AgentClientError.self) { try await client.files() }
        #expect(error?.wireError?.code == .forbidden)
        #expect(error?.httpStatus == 403)
        #expect(error?.message.contains("operator") == true)
        let status = try await client.status()
        #expect(status.files == ConfigFiles.digests(["configuration.nix": "{ }"]))
        #expect(try await f.client(server, identity: f.operatorCert).files().files == ["configuration.nix": "{ }"])
        await server.shutdown()
    }

    @Test func clientCertificateWithoutRoleIsForbidden() async throws {
        let f = try ChannelFixture()
        let server = try await f.startServer()
        // Chains to the cluster CA, is a client certificate, but its OU names no nk3 role.
        let client = try f.client(server, identity: try f.clientCertificate(organizationalUnit: "nk3-admin"))
        let error = await #expect(throws: AgentClientError.self) { try await client.status() }
        #expect(error?.code == .wire)
        #expect(error?.wireError?.code == .forbidden)
        #expect(error?.httpStatus == 403)
        #expect(error?.wireError?.message.contains("no nk3 role") == true)
        await server.shutdown()
    }

    @Test func agentServerCertificateIsNoClientCertificate() async throws {
        let f = try ChannelFixture()
        let server = try await f.startServer()
        // An agent's own certificate (extended key usage serverAuth only, OU nk3-agent) cannot act as a client.
        let client = try f.client(server, identity: f.agentCert)
        let error = await #expect(throws: AgentClientError.self) { try await client.status() }
        #expect(error?.code == .tlsRefused || error?.wireError?.code == .forbidden)
        await server.shutdown()
    }

    // MARK: refused at the TLS layer

    @Test func noClientCertificateIsRefusedAtTLS() async throws {
        let f = try ChannelFixture()
        let server = try await f.startServer()
        let client = try f.client(server, identity: nil)
        let error = await #expect(throws: AgentClientError.self) { try await client.status() }
        #expect(error?.code == .tlsRefused)
        await server.shutdown()
    }

    @Test func clientCertificateFromAnotherCAIsRefusedAtTLS() async throws {
        let f = try ChannelFixture()
        let server = try await f.startServer()
        let otherCA = try ClusterCA.create(cluster: "other")
        let stranger = try otherCA.issueClient(name: "mallory", role: .operator)
        let client = try f.client(server, identity: stranger)
        let error = await #expect(throws: AgentClientError.self) { try await client.submit(try f.envelope(serial: 1)) }
        #expect(error?.code == .tlsRefused)
        #expect(f.engine.handledSerials.isEmpty)
        #expect(f.serialFileBytes == nil)
        await server.shutdown()
    }

    @Test func expiredClientCertificateIsRefusedAtTLS() async throws {
        let f = try ChannelFixture()
        let server = try await f.startServer()
        let twoDaysAgo = Date().addingTimeInterval(-2 * 86400)
        let expired = try f.ca.issueClient(name: "old", role: .operator, now: twoDaysAgo, validity: 86400)
        let client = try f.client(server, identity: expired)
        let error = await #expect(throws: AgentClientError.self) { try await client.status() }
        #expect(error?.code == .tlsRefused)
        await server.shutdown()
    }

    @Test func clientRefusesAgentWhoseCertificateDoesNotMatchExpectedAddress() async throws {
        // The agent's certificate names node-a / 10.0.0.5, but we reach it at 127.0.0.1.
        let f = try ChannelFixture(agentAddresses: ["10.0.0.5"])
        let server = try await f.startServer()

        let byIP = try f.client(server, identity: f.operatorCert, expectedName: "127.0.0.1")
        let ipError = await #expect(throws: AgentClientError.self) { try await byIP.status() }
        #expect(ipError?.code == .tlsRefused)

        let byOtherName = try f.client(server, identity: f.operatorCert, expectedName: "node-b")
        let nameError = await #expect(throws: AgentClientError.self) { try await byOtherName.status() }
        #expect(nameError?.code == .tlsRefused)

        // Positive control: the name it was issued for is accepted.
        let byName = try f.client(server, identity: f.operatorCert, expectedName: "node-a")
        #expect(try await byName.status().hostname == "node-a")
        await server.shutdown()
    }

    @Test func clientRefusesAgentFromAnotherCA() async throws {
        let f = try ChannelFixture()
        let server = try await f.startServer()
        let otherRoots = try TLSConfigs.trustRoots(pem: try ClusterCA.create(cluster: "other").certificatePEM)
        let client = try f.client(server, identity: f.operatorCert, trustRoots: otherRoots)
        let error = await #expect(throws: AgentClientError.self) { try await client.status() }
        #expect(error?.code == .tlsRefused)
        await server.shutdown()
    }

    @Test func unreachableAgentIsReportedAsSuch() async throws {
        let f = try ChannelFixture()
        let server = try await f.startServer()
        let client = try f.client(server, identity: f.operatorCert)
        await server.shutdown()
        let error = await #expect(throws: AgentClientError.self) { try await client.status() }
        #expect(error?.code == .unreachable)
    }

    // MARK: envelopes refused with their own code, nothing persisted

    /// Submits after one accepted envelope (serial 10), expects `code`, and checks the persisted serial and
    /// the engine's record did not move.
    private func expectRefused(
        _ code: WireError.Code, status: Int, _ make: (ChannelFixture) throws -> ByteBuffer
    ) async throws {
        let f = try ChannelFixture()
        let server = try await f.startServer()
        let client = try f.client(server, identity: f.operatorCert)
        _ = try await client.submit(try f.envelope(serial: 10))
        let before = f.serialFileBytes
        #expect(before != nil)

        let body = try make(f)
        let error = await #expect(throws: AgentClientError.self) { try await client.submit(rawBody: body) }
        #expect(error?.code == .wire)
        #expect(error?.wireError?.code == code)
        #expect(error?.httpStatus == status)
        #expect(f.serialFileBytes == before)
        #expect(try f.persistedSerial() == 10)
        #expect(f.engine.handledSerials == [10])
        // The connection-level refusal did not break the server.
        #expect(try await client.status().lastAcceptedSerial == 10)
        await server.shutdown()
    }

    private static func encode(_ envelope: SignedEnvelope) throws -> ByteBuffer {
        ByteBuffer(bytes: try CanonicalJSON.encode(envelope))
    }

    @Test func tamperedPayloadIsRefused() async throws {
        try await expectRefused(.badSignature, status: 403) { f in
            var env = try f.envelope(serial: 11)
            var text = String(decoding: env.payload, as: UTF8.self)
            text = text.replacingOccurrences(of: "\"serial\":11", with: "\"serial\":12")
            #expect(text != String(decoding: env.payload, as: UTF8.self))
            env.payload = Data(text.utf8)
            return try Self.encode(env)
        }
    }

    @Test func tamperedFileContentIsRefused() async throws {
        // An apply whose file bytes (the payload body, after the signed header line) were altered in transit.
        try await expectRefused(.badSignature, status: 403) { f in
            let bundle = ApplyBundle(files: ["configuration.nix": "{ services.k3s.enable = true; }\n"], action: .switch)
            var env = try f.signer.sign(.apply(bundle), node: ChannelFixture.node, serial: 11, now: Date())
            var bytes = [UInt8](env.payload)
            let at = try #require(bytes.lastIndex(of: UInt8(ascii: "t")))  // "true" → "frue", same size
            #expect(at > bytes.firstIndex(of: 0x0A)!)
            bytes[at] = UInt8(ascii: "f")
            env.payload = Data(bytes)
            return try Self.encode(env)
        }
    }

    @Test func envelopeWithDuplicatedFieldIsRefused() async throws {
        // A second "payload" after the signed one: the parser refuses it rather than picking either.
        try await expectRefused(.malformed, status: 400) { f in
            let env = try f.envelope(serial: 11)
            var text = String(decoding: try CanonicalJSON.encode(env), as: UTF8.self)
            text.removeLast()  // "}"
            text += ",\"payload\":\"\(try f.envelope(serial: 12).payload.base64EncodedString())\"}"
            return ByteBuffer(string: text)
        }
    }

    @Test func unknownSigningKeyIsRefused() async throws {
        try await expectRefused(.unknownKey, status: 403) { _ in
            let rogue = EnvelopeSigner(privateKey: Curve25519.Signing.PrivateKey())
            return try Self.encode(
                try rogue.sign(.reboot(RebootCommand(reason: "x")), node: ChannelFixture.node, serial: 11, now: Date()))
        }
    }

    @Test func anotherNodesEnvelopeIsRefused() async throws {
        try await expectRefused(.wrongNode, status: 403) { f in try Self.encode(try f.envelope(serial: 11, node: "node-b")) }
    }

    @Test func expiredEnvelopeIsRefused() async throws {
        try await expectRefused(.expired, status: 403) { f in
            try Self.encode(try f.envelope(serial: 11, now: Date().addingTimeInterval(-3600), validity: 60))
        }
    }

    @Test func notYetValidEnvelopeIsRefused() async throws {
        try await expectRefused(.notYetValid, status: 403) { f in
            try Self.encode(try f.envelope(serial: 11, now: Date().addingTimeInterval(3600)))
        }
    }

    @Test func replayedSerialIsRefused() async throws {
        // Another envelope with the accepted serial (another validity: other bytes). The accepted one itself, sent
        // again byte for byte, is answered as before: ChannelResubmissionTests.
        try await expectRefused(.replayedSerial, status: 403) { f in try Self.encode(try f.envelope(serial: 10, validity: 299)) }
    }

    @Test func olderSerialIsRefused() async throws {
        try await expectRefused(.replayedSerial, status: 403) { f in try Self.encode(try f.envelope(serial: 3)) }
    }

    @Test func malformedJSONIsRefused() async throws {
        try await expectRefused(.malformed, status: 400) { _ in ByteBuffer(string: "{\"version\": 1, \"keyID\": ") }
    }

    @Test func envelopeWithUnknownFieldIsRefused() async throws {
        try await expectRefused(.malformed, status: 400) { f in
            let env = try f.envelope(serial: 11)
            var object = try JSONSerialization.jsonObject(with: try CanonicalJSON.encode(env)) as! [String: Any]
            object["extra"] = true
            return ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: object))
        }
    }

    @Test func oversizedBodyIsRefused() async throws {
        try await expectRefused(.bodyTooLarge, status: 413) { _ in
            ByteBuffer(repeating: UInt8(ascii: "x"), count: NK3Wire.maxBodyBytes + 1)
        }
    }

    @Test func replayIsRefusedAfterAgentRestart() async throws {
        let f = try ChannelFixture()
        let first = try await f.startServer()
        let c1 = try f.client(first, identity: f.operatorCert)
        _ = try await c1.submit(try f.envelope(serial: 5))
        await first.shutdown()

        // A new server on the same state directory: the serial survived.
        let second = try AgentServer(config: try f.serverConfig(), engine: f.engine, logger: channelQuietLogger())
        try await second.start()
        let c2 = try f.client(second, identity: f.operatorCert)
        #expect(try await c2.status().lastAcceptedSerial == 5)
        let error = await #expect(throws: AgentClientError.self) { try await c2.submit(try f.envelope(serial: 5)) }
        #expect(error?.wireError?.code == .replayedSerial)
        #expect(try f.persistedSerial() == 5)

        let receipt = try await c2.submit(try f.envelope(serial: 6))
        #expect(receipt.serial == 6)
        #expect(f.engine.handledSerials == [5, 6])
        #expect(try f.persistedSerial() == 6)
        await second.shutdown()
    }

    @Test func concurrentSubmissionsOfOneSerialAcceptExactlyOne() async throws {
        let f = try ChannelFixture()
        let server = try await f.startServer()
        let client = try f.client(server, identity: f.operatorCert)
        let envelope = try f.envelope(serial: 42)
        let receipts = await withTaskGroup(of: EnvelopeReceipt?.self) { group in
            for _ in 0..<8 { group.addTask { try? await client.submit(envelope) } }
            return await group.reduce(into: [EnvelopeReceipt]()) { if let r = $1 { $0.append(r) } }
        }
        // One runs it; the others are refused (it is still being carried out) or, once it has been answered, get
        // that same answer (a re-submission of the envelope accepted last: SerialStore).
        #expect(receipts.count >= 1)
        #expect(Set(receipts).count == 1, "\(receipts)")
        #expect(f.engine.handledSerials == [42])
        await server.shutdown()
    }

    // MARK: key files

    @Test func worldReadableAgentKeyIsRefused() async throws {
        let f = try ChannelFixture()
        let dir = try channelTempDir("keys")
        let keyPath = dir + "/agent.key"
        try SecureFiles.writePrivateKey(f.agentCert.privateKeyPEM, to: keyPath)
        var config = try f.serverConfig()
        config.privateKey = .file(keyPath)
        // 0600: accepted.
        _ = try AgentServer(config: config, engine: f.engine, logger: channelQuietLogger())

        chmod(keyPath, 0o644)
        let error = #expect(throws: SecureFileError.self) {
            _ = try AgentServer(config: config, engine: f.engine, logger: channelQuietLogger())
        }
        #expect(error?.code == .permissionsTooOpen)
        #expect(error?.message.contains("chmod 600 \(keyPath)") == true)
    }
}
