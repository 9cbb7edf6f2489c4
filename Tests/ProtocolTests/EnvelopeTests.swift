import Crypto
import NK3Protocol
import Testing

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Canonical encoding, Ed25519 envelopes, and every refusal of `EnvelopeVerifier`, in process.
@Suite("Protocol: canonical encoding and signed envelopes")
struct EnvelopeTests {
    let signer = EnvelopeSigner(privateKey: Curve25519.Signing.PrivateKey())
    let now = Date(timeIntervalSince1970: 1_750_000_000.5)
    var verifier: EnvelopeVerifier { EnvelopeVerifier(node: "node-a", trustedKeys: [signer.privateKey.publicKey]) }

    func applyPayload(serial: UInt64 = 7, node: String = "node-a") -> CommandPayload {
        CommandPayload(
            node: node, serial: serial, issuedAt: now, expiresAt: now.addingTimeInterval(300),
            command: .apply(
                ApplyBundle(
                    files: ["configuration.nix": "{ pkgs, ... }: { networking.hostName = \"a\"; }\n", "k3s.nix": "{ }"],
                    action: .boot, upgrade: true, nixChannel: "https://nixos.org/channels/nixos-24.05")))
    }

    // MARK: canonical encoding

    @Test func canonicalEncodingRoundTripsEveryCommand() throws {
        let commands: [Command] = [
            applyPayload().command, .confirm(ConfirmCommand(applySerial: 7)), .reboot(RebootCommand(reason: "kernel")),
            .rollback(RollbackCommand(reason: "unhealthy")),
        ]
        for command in commands {
            var payload = applyPayload()
            payload.command = command
            let bytes = try CanonicalJSON.encode(payload)
            let back = try CanonicalJSON.decode(CommandPayload.self, from: bytes)
            #expect(back == payload)
            // Re-encoding the decoded value gives the very same bytes.
            #expect(try CanonicalJSON.encode(back) == bytes)
        }
    }

    @Test func canonicalEncodingSortsKeysAndUsesMilliseconds() throws {
        let text = String(decoding: try CanonicalJSON.encode(applyPayload()), as: UTF8.self)
        #expect(text.hasPrefix("{\"command\":"))
        #expect(text.contains("\"issuedAt\":1750000000500"))
        #expect(text.contains("https://nixos.org/channels"))  // no escaped slashes
        let keys = ["command", "expiresAt", "issuedAt", "node", "serial", "version"]
        let positions = keys.map { text.firstRange(of: "\"\($0)\":")!.lowerBound }
        #expect(positions == positions.sorted())
    }

    @Test func envelopeRoundTripsThroughJSON() throws {
        let env = try signer.sign(applyPayload())
        let back = try CanonicalJSON.decode(SignedEnvelope.self, from: try CanonicalJSON.encode(env))
        #expect(back == env)
        #expect(back.signature.count == 64)
        #expect(back.keyID == SigningKeyID.of(signer.privateKey.publicKey))
    }

    @Test func statusRoundTrips() throws {
        let status = AgentStatus(
            hostname: "a", kernel: "6.6.1", nixosVersion: "24.05", currentSystem: "/nix/store/s", bootedSystem: nil,
            currentGeneration: 4, bootedGeneration: 3, profileGeneration: 4, bootID: "b", uptimeSeconds: 1.5,
            configHash: ConfigFiles.hash(files: ["configuration.nix": "x"]), files: [:], channel: nil,
            lastAcceptedSerial: 9,
            operation: OperationStatus(
                id: "op", serial: 9, kind: "apply", action: .switch, phase: .awaitingConfirm, startedAt: now,
                deadline: now.addingTimeInterval(600)),
            lastResult: nil, kubelet: KubeletState(unit: "k3s", unitActive: true, healthz: nil))
        #expect(try CanonicalJSON.decode(AgentStatus.self, from: try CanonicalJSON.encode(status)) == status)
    }

    // MARK: signatures

    @Test func signedEnvelopeVerifies() throws {
        let env = try signer.sign(applyPayload())
        let payload = try verifier.verify(env, lastAcceptedSerial: 6, now: now.addingTimeInterval(10))
        #expect(payload == applyPayload())
    }

    @Test func anyPinnedKeyVerifies() throws {
        let old = EnvelopeSigner(privateKey: Curve25519.Signing.PrivateKey())
        let v = EnvelopeVerifier(node: "node-a", trustedKeys: [old.privateKey.publicKey, signer.privateKey.publicKey])
        #expect(try v.verify(try old.sign(applyPayload()), lastAcceptedSerial: nil, now: now).serial == 7)
        #expect(try v.verify(try signer.sign(applyPayload()), lastAcceptedSerial: nil, now: now).serial == 7)
    }

    @Test func publicKeyParsesFromBase64OfRawBytes() throws {
        let text = signer.privateKey.publicKey.rawRepresentation.base64EncodedString()
        #expect(try Curve25519.Signing.PublicKey(base64: text + "\n").rawRepresentation == signer.privateKey.publicKey.rawRepresentation)
        #expect(throws: WireError.self) { try Curve25519.Signing.PublicKey(base64: "AAAA") }
    }

    // MARK: each verifier refusal

    private func refusal(_ env: SignedEnvelope, last: UInt64? = nil, at time: Date? = nil) -> EnvelopeError? {
        do {
            _ = try verifier.verify(env, lastAcceptedSerial: last, now: time ?? now)
            return nil
        } catch {
            return error
        }
    }

    @Test func tamperedPayloadIsBadSignature() throws {
        var env = try signer.sign(applyPayload())
        var text = String(decoding: env.payload, as: UTF8.self)
        text = text.replacing("\"serial\":7", with: "\"serial\":8")
        #expect(Data(text.utf8) != env.payload)
        env.payload = Data(text.utf8)
        #expect(refusal(env) == .badSignature)
        #expect(refusal(env)?.wireError.code == .badSignature)
    }

    @Test func tamperedSignatureIsBadSignature() throws {
        var env = try signer.sign(applyPayload())
        env.signature[0] ^= 1
        #expect(refusal(env) == .badSignature)
        env.signature = env.signature.prefix(63)
        #expect(refusal(env) == .badSignature)
    }

    @Test func signatureWithoutDomainSeparationIsRefused() throws {
        // A valid Ed25519 signature over the payload alone (no signing context) must not pass.
        var env = try signer.sign(applyPayload())
        env.signature = try signer.privateKey.signature(for: env.payload)
        #expect(refusal(env) == .badSignature)
    }

    @Test func signatureOverUnhashedPayloadIsRefused() throws {
        // Version 2 signs context + SHA-256(payload): context + the payload itself (version 1's rule) must not pass.
        var env = try signer.sign(applyPayload())
        env.signature = try signer.privateKey.signature(for: NK3Wire.signingContext + Array(env.payload))
        #expect(refusal(env) == .badSignature)
    }

    @Test func versionOneEnvelopeIsRefusedAsUnsupported() throws {
        // A genuine version-1 envelope: v1 context, signature over the payload itself, JSON payload.
        let payloadJSON = try CanonicalJSON.encode(applyPayload())
        let v1Signature = try signer.privateKey.signature(
            for: Array("nk3-command-envelope-v1\u{0}".utf8) + Array(payloadJSON))
        let env = SignedEnvelope(version: 1, keyID: signer.keyID, payload: payloadJSON, signature: Data(v1Signature))
        #expect(refusal(env) == .unsupportedVersion(1))
        #expect(refusal(env)?.wireError.code == .unsupportedVersion)
        // Relabelled as version 2, its signature does not cover the version-2 message.
        var relabelled = env
        relabelled.version = NK3Wire.version
        #expect(refusal(relabelled) == .badSignature)
    }

    @Test func tamperedFileContentIsBadSignature() throws {
        var env = try signer.sign(applyPayload())
        // The last payload byte is inside the body (file contents), far from the JSON header.
        var bytes = [UInt8](env.payload)
        let headerEnd = bytes.firstIndex(of: 0x0A)!
        #expect(headerEnd < bytes.count - 1)
        bytes[bytes.count - 1] ^= 0x20
        env.payload = Data(bytes)
        #expect(refusal(env) == .badSignature)
        // Appending content, or dropping the last byte, is the same refusal.
        var longer = try signer.sign(applyPayload())
        longer.payload.append(contentsOf: Array("x".utf8))
        #expect(refusal(longer) == .badSignature)
        var shorter = try signer.sign(applyPayload())
        shorter.payload.removeLast()
        #expect(refusal(shorter) == .badSignature)
    }

    @Test func contentSwappedBetweenSignedEnvelopesIsBadSignature() throws {
        // Same header (same sizes), other content of the same length: the signature covers the content.
        let a = try signer.sign(applyPayload())
        var payload = applyPayload()
        payload.command = .apply(
            ApplyBundle(
                files: ["configuration.nix": "{ pkgs, ... }: { networking.hostName = \"b\"; }\n", "k3s.nix": "{ }"],
                action: .boot, upgrade: true, nixChannel: "https://nixos.org/channels/nixos-24.05"))
        let b = try signer.sign(payload)
        #expect(a.payload.count == b.payload.count)
        var env = a
        env.payload = b.payload
        #expect(refusal(env) == .badSignature)
        #expect(refusal(b) == nil)
    }

    /// Signs hand-made wire bytes: a header line (a JSON text) and a body.
    private func signedWire(header: String, body: String) throws -> SignedEnvelope {
        try signer.sign(payloadBytes: Data((header + "\n" + body).utf8))
    }

    private func applyHeader(files: String, version: Int = NK3Wire.version) -> String {
        """
        {"command":{"apply":{"action":"boot","confirmTimeoutSeconds":600,"files":[\(files)],"upgrade":false},\
        "kind":"apply"},"expiresAt":1750000000800,"issuedAt":1750000000500,"node":"node-a","serial":7,\
        "version":\(version)}
        """
    }

    private func malformedReason(_ env: SignedEnvelope) -> String? {
        guard case .malformed(let why)? = refusal(env) else { return nil }
        return why
    }

    @Test func handMadeWireBytesVerify() throws {
        // The hand-made layout of these tests is the real one: it verifies when it is consistent.
        let env = try signedWire(
            header: applyHeader(files: #"{"name":"configuration.nix","size":2},{"name":"k3s.nix","size":3}"#),
            body: "{}{ }")
        let payload = try verifier.verify(env, lastAcceptedSerial: nil, now: now)
        guard case .apply(let bundle) = payload.command else {
            Issue.record("expected an apply")
            return
        }
        #expect(bundle.files == ["configuration.nix": "{}", "k3s.nix": "{ }"])
    }

    @Test func signedSizeLargerThanContentIsMalformed() throws {
        // A listed file whose content is missing (or short): the sizes run past the body.
        let missing = try signedWire(
            header: applyHeader(files: #"{"name":"configuration.nix","size":2},{"name":"k3s.nix","size":3}"#),
            body: "{}")
        #expect(malformedReason(missing)?.contains("'k3s.nix' is listed with 3 bytes, but 0 remain") == true)
        let short = try signedWire(header: applyHeader(files: #"{"name":"configuration.nix","size":5}"#), body: "{}")
        #expect(malformedReason(short)?.contains("configuration.nix") == true)
        let negative = try signedWire(header: applyHeader(files: #"{"name":"configuration.nix","size":-1}"#), body: "")
        #expect(malformedReason(negative) != nil)
    }

    @Test func contentBeyondTheListedFilesIsMalformed() throws {
        // An extra, unlisted file (or any byte) after the listed ones.
        let extra = try signedWire(header: applyHeader(files: #"{"name":"configuration.nix","size":2}"#), body: "{}{ }")
        #expect(malformedReason(extra)?.contains("3 bytes after the last listed file") == true)
        // A command without files has an empty body.
        var reboot = applyPayload()
        reboot.command = .reboot(RebootCommand(reason: "x"))
        let header = String(decoding: try reboot.wireBytes().dropLast(), as: UTF8.self)
        #expect(try verifier.verify(try signedWire(header: header, body: ""), lastAcceptedSerial: nil, now: now).command == reboot.command)
        #expect(malformedReason(try signedWire(header: header, body: "x"))?.contains("reboot command") == true)
    }

    @Test func duplicateOrUnsortedFileNamesAreMalformed() throws {
        let twice = try signedWire(
            header: applyHeader(files: #"{"name":"configuration.nix","size":2},{"name":"configuration.nix","size":2}"#),
            body: "{}{}")
        #expect(malformedReason(twice)?.contains("unique and sorted") == true)
        let unsorted = try signedWire(
            header: applyHeader(files: #"{"name":"k3s.nix","size":2},{"name":"configuration.nix","size":2}"#),
            body: "{}{}")
        #expect(malformedReason(unsorted)?.contains("unique and sorted") == true)
    }

    @Test func contentThatIsNotUTF8IsMalformed() throws {
        let header = applyHeader(files: #"{"name":"configuration.nix","size":2}"#)
        var bytes = Array((header + "\n").utf8)
        bytes += [0xC3, 0x28]  // an invalid two-byte sequence
        let env = try signer.sign(payloadBytes: Data(bytes))
        #expect(malformedReason(env)?.contains("not valid UTF-8") == true)
    }

    @Test func unknownOrMissingHeaderFieldsAreMalformed() throws {
        let files = #"{"name":"configuration.nix","size":2}"#
        let header = applyHeader(files: files)
        let cases = [
            header.replacing(#""node":"node-a""#, with: #""node":"node-a","priority":1"#),  // top level
            header.replacing(#""upgrade":false"#, with: #""upgrade":false,"hooks":[]"#),  // apply
            header.replacing(#""size":2"#, with: #""size":2,"mode":"0755""#),  // file entry
            header.replacing(#","node":"node-a""#, with: ""),  // missing node
            header.replacing(#","size":2"#, with: ""),  // a file without a size
        ]
        for text in cases {
            #expect(text != header)
            #expect(malformedReason(try signedWire(header: text, body: "{}")) != nil, "\(text)")
        }
        var confirm = applyPayload()
        confirm.command = .confirm(ConfirmCommand(applySerial: 3))
        let confirmHeader = String(decoding: try confirm.wireBytes().dropLast(), as: UTF8.self)
        let extra = confirmHeader.replacing(#""applySerial":3"#, with: #""applySerial":3,"force":true"#)
        #expect(extra != confirmHeader)
        #expect(malformedReason(try signedWire(header: extra, body: ""))?.contains("force") == true)
        // A second command object next to the one `kind` names.
        let two = confirmHeader.replacing(#""kind":"confirm""#, with: #""kind":"confirm","reboot":{"reason":"x"}"#)
        #expect(malformedReason(try signedWire(header: two, body: ""))?.contains("reboot") == true)
    }

    @Test func payloadHeaderOfAnotherVersionIsUnsupported() throws {
        let env = try signedWire(header: applyHeader(files: #"{"name":"configuration.nix","size":2}"#, version: 1), body: "{}")
        #expect(refusal(env) == .unsupportedVersion(1))
    }

    @Test func unknownKeyIsRefused() throws {
        let rogue = EnvelopeSigner(privateKey: Curve25519.Signing.PrivateKey())
        let env = try rogue.sign(applyPayload())
        #expect(refusal(env) == .unknownKey(rogue.keyID))
        #expect(refusal(env)?.wireError.code == .unknownKey)
    }

    @Test func keyIDOfPinnedKeyWithForeignSignatureIsBadSignature() throws {
        let rogue = EnvelopeSigner(privateKey: Curve25519.Signing.PrivateKey())
        var env = try rogue.sign(applyPayload())
        env.keyID = signer.keyID
        #expect(refusal(env) == .badSignature)
    }

    @Test func wrongNodeIsRefused() throws {
        let env = try signer.sign(applyPayload(node: "node-b"))
        #expect(refusal(env) == .wrongNode(expected: "node-a", got: "node-b"))
        #expect(refusal(env)?.wireError.code == .wrongNode)
    }

    @Test func expiredIsRefused() throws {
        let env = try signer.sign(applyPayload())
        let later = now.addingTimeInterval(300)  // expiresAt is exclusive
        #expect(refusal(env, at: later) == .expired(expiresAt: now.addingTimeInterval(300), now: later))
        #expect(refusal(env, at: later)?.wireError.code == .expired)
        #expect(refusal(env, at: now.addingTimeInterval(299)) == nil)
    }

    @Test func notYetValidIsRefusedBeyondClockSkew() throws {
        let env = try signer.sign(applyPayload())
        let early = now.addingTimeInterval(-NK3Wire.defaultClockSkew - 1)
        #expect(refusal(env, at: early) == .notYetValid(issuedAt: now, now: early))
        #expect(refusal(env, at: early)?.wireError.code == .notYetValid)
        // Within the skew: accepted.
        #expect(refusal(env, at: now.addingTimeInterval(-NK3Wire.defaultClockSkew + 1)) == nil)
    }

    @Test func replayedOrOlderSerialIsRefused() throws {
        let env = try signer.sign(applyPayload(serial: 7))
        #expect(refusal(env, last: 7) == .replayedSerial(serial: 7, lastAccepted: 7))
        #expect(refusal(env, last: 8) == .replayedSerial(serial: 7, lastAccepted: 8))
        #expect(refusal(env, last: 7)?.wireError.code == .replayedSerial)
        #expect(refusal(env, last: 6) == nil)
        #expect(refusal(env, last: nil) == nil)
    }

    @Test func unsupportedVersionIsRefused() throws {
        var env = try signer.sign(applyPayload())
        env.version = NK3Wire.version + 1
        #expect(refusal(env) == .unsupportedVersion(NK3Wire.version + 1))
        var payload = applyPayload()
        payload.version = 99
        #expect(refusal(try signer.sign(payload)) == .unsupportedVersion(99))
    }

    @Test func invalidBundleIsMalformedEvenWhenSigned() throws {
        var payload = applyPayload()
        payload.command = .apply(ApplyBundle(files: ["../etc/passwd": "x", "configuration.nix": "{}"], action: .switch))
        guard case .malformed(let why)? = refusal(try signer.sign(payload)) else {
            Issue.record("expected malformed")
            return
        }
        #expect(why.contains("../etc/passwd"))
    }

    // MARK: strict decoding of malformed input

    @Test(arguments: [
        "", "{", "[]", "null", "{\"version\":1}", "{\"version\":\"1\",\"keyID\":\"a\",\"payload\":\"\",\"signature\":\"\"}",
        "{\"version\":1,\"keyID\":\"a\",\"payload\":\"not base64!\",\"signature\":\"\"}",
    ])
    func malformedEnvelopeJSONIsRefused(_ text: String) {
        do {
            _ = try verifier.verify(envelopeJSON: Data(text.utf8), lastAcceptedSerial: nil, now: now)
            Issue.record("accepted malformed input \(text)")
        } catch {
            guard case .malformed = error else {
                Issue.record("expected malformed, got \(error)")
                return
            }
            #expect(error.wireError.code == .malformed)
            #expect(error.wireError.httpStatus == 400)
        }
    }

    @Test func signedButUndecodablePayloadIsMalformed() throws {
        let env = try signer.sign(payloadBytes: Data("{\"node\":\"node-a\"}".utf8))
        guard case .malformed(let why)? = refusal(env) else {
            Issue.record("expected malformed")
            return
        }
        #expect(why.contains("payload"))
    }

    @Test func unknownCommandKindIsMalformed() throws {
        var text = String(decoding: try applyPayload().wireBytes(), as: UTF8.self)
        text = text.replacing("\"kind\":\"apply\"", with: "\"kind\":\"format-disk\"")
        let env = try signer.sign(payloadBytes: Data(text.utf8))
        guard case .malformed(let why)? = refusal(env) else {
            Issue.record("expected malformed")
            return
        }
        #expect(why.contains("format-disk"))
    }

    @Test func wireErrorDecodesUnknownCodes() throws {
        let e = try CanonicalJSON.decode(WireError.self, from: Data("{\"code\":\"brand_new\",\"message\":\"m\"}".utf8))
        #expect(e.code == .unknown)
        #expect(WireError(.replayedSerial, "x").httpStatus == 403)
        #expect(WireError(.bodyTooLarge, "x").httpStatus == 413)
    }
}
