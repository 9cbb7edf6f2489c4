import Crypto
import Foundation
import NK3Protocol
import Testing

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
        let positions = keys.map { text.range(of: "\"\($0)\":")!.lowerBound }
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
        var bytes = [UInt8](env.payload)
        let i = bytes.firstIndex(of: UInt8(ascii: "7"))!  // the serial digit
        bytes[i] = UInt8(ascii: "8")
        env.payload = Data(bytes)
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
        env.version = 2
        #expect(refusal(env) == .unsupportedVersion(2))
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
        var text = String(decoding: try CanonicalJSON.encode(applyPayload()), as: UTF8.self)
        text = text.replacingOccurrences(of: "\"kind\":\"apply\"", with: "\"kind\":\"format-disk\"")
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
