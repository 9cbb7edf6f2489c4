import Foundation
import NK3Agent
import NK3Common
import NK3Coordinator
import NK3Protocol
import Testing

/// `PKIStore` files on disk, used for a real handshake by `AgentServer` and `AgentClient`.
@Suite("Channel: PKI files drive a real mTLS handshake", .timeLimit(.minutes(2)))
struct ChannelPKITests {
    private func mode(_ path: String) throws -> Int {
        let attrs = try FileManager.default.attributesOfItem(atPath: path)
        return (attrs[.posixPermissions] as! NSNumber).intValue & 0o777
    }

    @Test func initIssueAndHandshakeFromFiles() async throws {
        let base = try channelTempDir("pki")
        let store = PKIStore(directory: PKIStore.defaultDirectory(cluster: "lab", base: base))
        let operatorFiles = try store.initialize(cluster: "lab")
        let agentFiles = try store.issueAgent(node: "node-a", addresses: ["127.0.0.1"])
        let readerFiles = try store.issueClient(name: "dash", role: .reader)

        // Secrets are 0600, the rest is readable.
        for key in [
            store.caPrivateKeyPath, store.signingKeyPath, operatorFiles.privateKeyPath, agentFiles.privateKeyPath,
            readerFiles.privateKeyPath,
        ] {
            #expect(try mode(key) == 0o600, "\(key)")
        }
        #expect(try mode(store.caCertificatePath) == 0o644)
        // signing.pub is what the NixOS module's signingPublicKeys takes: base64 of 32 raw bytes.
        let pub = try store.signingPublicKey()
        #expect(Data(base64Encoded: pub)?.count == 32)
        let signerID = try store.loadSigner().keyID
        #expect(SigningKeyID.of(try .init(base64: pub)) == signerID)

        // The agent runs from the files …
        let stateDir = try channelTempDir("pki-state")
        let engine = ChannelRecordingEngine()
        let server = try AgentServer(
            config: AgentServerConfig(
                host: "127.0.0.1", port: 0, certificate: .file(agentFiles.certificatePath),
                privateKey: .file(agentFiles.privateKeyPath), clientCA: .file(store.caCertificatePath),
                signingPublicKeys: [pub], nodeName: "node-a", stateDirectory: stateDir),
            engine: engine, logger: channelQuietLogger())
        let port = try await server.start()

        // … and so does the coordinator: operator submits a signed envelope, reader reads.
        let op = try AgentClient(
            endpoint: AgentEndpoint(host: "127.0.0.1", port: port, expectedName: "node-a"),
            trustRoots: try store.trustRoots(), identity: try store.clientIdentity(name: "operator"))
        let envelope = try store.loadSigner().sign(
            .confirm(ConfirmCommand(applySerial: 1)), node: "node-a", serial: 2, now: Date())
        #expect(try await op.submit(envelope).serial == 2)
        #expect(engine.handledSerials == [2])

        let reader = try AgentClient(
            endpoint: AgentEndpoint(host: "127.0.0.1", port: port), trustRoots: try store.trustRoots(),
            identity: try store.clientIdentity(name: "dash"))
        #expect(try await reader.status().lastAcceptedSerial == 2)
        await server.shutdown()
    }

    @Test func initRefusesAnExistingPKI() throws {
        let dir = try channelTempDir("pki-twice") + "/c"
        let store = PKIStore(directory: dir)
        try store.initialize(cluster: "c")
        let caBefore = try SecureFiles.read(store.caCertificatePath)
        let error = #expect(throws: PKIError.self) { try store.initialize(cluster: "c") }
        #expect(error?.code == .alreadyInitialized)
        #expect(try SecureFiles.read(store.caCertificatePath) == caBefore)
        // No staging directory left behind.
        let siblings = try FileManager.default.contentsOfDirectory(atPath: (dir as NSString).deletingLastPathComponent)
        #expect(siblings == ["c"])
    }

    @Test func issuingTwiceNeedsForce() throws {
        let store = PKIStore(directory: try channelTempDir("pki-force") + "/c")
        try store.initialize(cluster: "c")
        let first = try store.issueAgent(node: "n1", addresses: ["10.0.0.1"])
        let before = try SecureFiles.read(first.certificatePath)
        let error = #expect(throws: PKIError.self) { try store.issueAgent(node: "n1", addresses: ["10.0.0.1"]) }
        #expect(error?.code == .alreadyExists)
        #expect(try SecureFiles.read(first.certificatePath) == before)
        try store.issueAgent(node: "n1", addresses: ["10.0.0.1"], overwrite: true)
        #expect(try SecureFiles.read(first.certificatePath) != before)
    }

    @Test func issuingWithoutInitAndBadNamesAreClearErrors() throws {
        let store = PKIStore(directory: try channelTempDir("pki-none") + "/c")
        let missing = #expect(throws: PKIError.self) { try store.issueClient(name: "x", role: .reader) }
        #expect(missing?.code == .notInitialized)
        #expect(missing?.message.contains("nk3 certs init") == true)
        try store.initialize(cluster: "c")
        let bad = #expect(throws: PKIError.self) { try store.issueAgent(node: "../evil", addresses: ["1.2.3.4"]) }
        #expect(bad?.code == .invalidName)
    }

    @Test func readableKeysAreRefused() throws {
        let store = PKIStore(directory: try channelTempDir("pki-perm") + "/c")
        try store.initialize(cluster: "c")
        let files = store.clientFiles(name: "operator")
        #expect(try store.clientIdentity(name: "operator").certificateChain.count == 1)

        chmod(files.privateKeyPath, 0o644)
        let clientError = #expect(throws: SecureFileError.self) { try store.clientIdentity(name: "operator") }
        #expect(clientError?.code == .permissionsTooOpen)
        #expect(clientError?.message.contains("chmod 600") == true)

        chmod(store.caPrivateKeyPath, 0o640)
        #expect(throws: SecureFileError.self) { try store.loadCA() }
        chmod(store.signingKeyPath, 0o604)
        #expect(throws: SecureFileError.self) { try store.loadSigner() }
    }

    @Test func atomicWriteReplacesWholeFileWithExactMode() throws {
        let dir = try channelTempDir("atomic")
        let path = dir + "/state.json"
        let old = umask(0o077)
        defer { umask(old) }
        try SecureFiles.writeAtomically("one", to: path, permissions: 0o644)
        #expect(try mode(path) == 0o644)  // exact mode whatever the umask
        try SecureFiles.writeAtomically("two", to: path, permissions: 0o600)
        #expect(try SecureFiles.readText(path) == "two")
        #expect(try mode(path) == 0o600)
        let error = #expect(throws: SecureFileError.self) {
            try SecureFiles.writeAtomically("three", to: path, overwrite: false)
        }
        #expect(error?.code == .alreadyExists)
        #expect(try SecureFiles.readText(path) == "two")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["state.json"])  // no temp files left
    }
}
