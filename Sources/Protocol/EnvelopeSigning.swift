import Crypto

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Identifier of an Ed25519 signing key: hex of the first 8 bytes of SHA-256 of the raw public key.
public enum SigningKeyID {
    public static func of(_ key: Curve25519.Signing.PublicKey) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var hex: [UInt8] = []
        for byte in SHA256.hash(data: key.rawRepresentation).prefix(8) {
            hex.append(digits[Int(byte >> 4)])
            hex.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: hex, as: UTF8.self)
    }
}

/// Signs command payloads with the cluster's Ed25519 signing key.
public struct EnvelopeSigner: Sendable {
    public let privateKey: Curve25519.Signing.PrivateKey
    public let keyID: String

    public init(privateKey: Curve25519.Signing.PrivateKey) {
        self.privateKey = privateKey
        self.keyID = SigningKeyID.of(privateKey.publicKey)
    }

    /// Encodes `payload` in its wire form (`CommandPayload.wireBytes()`) and signs it.
    public func sign(_ payload: CommandPayload) throws -> SignedEnvelope {
        try sign(payloadBytes: try payload.wireBytes())
    }

    /// Signs already-encoded payload bytes (used by tests that need to tamper with or hand-craft payloads).
    public func sign(payloadBytes: Data) throws -> SignedEnvelope {
        let signature = try privateKey.signature(for: SignedEnvelope.signedMessage(for: payloadBytes))
        return SignedEnvelope(keyID: keyID, payload: payloadBytes, signature: Data(signature))
    }

    /// Builds and signs a command valid from now (rounded down to the millisecond) for `validity`.
    public func sign(
        _ command: Command, node: String, serial: UInt64, now: Date, validity: TimeInterval = 300
    ) throws -> SignedEnvelope {
        let issued = Date(timeIntervalSince1970: (now.timeIntervalSince1970 * 1000).rounded(.down) / 1000)
        return try sign(
            CommandPayload(
                node: node, serial: serial, issuedAt: issued, expiresAt: issued.addingTimeInterval(validity),
                command: command))
    }
}

/// Verifies envelopes against the pinned signing keys of one node.
///
/// Checks, in order: format and version, key is pinned, signature (over SHA-256 of every payload byte,
/// file contents included, before any of them is parsed), payload format, target node, validity window,
/// serial strictly greater than the last accepted, bundle names and limits. The caller persists the new
/// serial only after `verify` returns.
public struct EnvelopeVerifier: Sendable {
    public let node: String
    public let trustedKeys: [String: Curve25519.Signing.PublicKey]
    public let clockSkew: TimeInterval
    /// How far ahead of this agent's clock (in serial milliseconds) a serial may be; see `serialLimit`.
    public let serialMargin: TimeInterval

    public init(
        node: String, trustedKeys: [Curve25519.Signing.PublicKey], clockSkew: TimeInterval = NK3Wire.defaultClockSkew,
        serialMargin: TimeInterval = NK3Wire.serialMargin
    ) {
        self.node = node
        var keys: [String: Curve25519.Signing.PublicKey] = [:]
        for k in trustedKeys { keys[SigningKeyID.of(k)] = k }
        self.trustedKeys = keys
        self.clockSkew = clockSkew
        self.serialMargin = serialMargin
    }

    /// The largest serial accepted at `now`: `now` in milliseconds since 1970 plus `margin`. A coordinator makes
    /// serials as `max(last accepted + 1, its time in milliseconds)`, so its serials stay under this while its clock
    /// is within the margin of the agent's.
    public static func serialLimit(now: Date, margin: TimeInterval) -> UInt64 {
        let ms = (now.timeIntervalSince1970 + margin) * 1000
        return ms <= 0 ? 0 : ms >= 1.8e19 ? UInt64.max : UInt64(ms)
    }

    /// Parses envelope JSON as it arrives over the wire (strictly: `SignedEnvelope(json:)` refuses unknown,
    /// duplicate and missing fields), then verifies it.
    public func verify(envelopeJSON: Data, lastAcceptedSerial: UInt64?, now: Date) throws(EnvelopeError) -> CommandPayload {
        try verify(try SignedEnvelope(json: envelopeJSON), lastAcceptedSerial: lastAcceptedSerial, now: now)
    }

    public func verify(_ envelope: SignedEnvelope, lastAcceptedSerial: UInt64?, now: Date) throws(EnvelopeError) -> CommandPayload {
        guard envelope.version == NK3Wire.version else { throw .unsupportedVersion(envelope.version) }
        guard let key = trustedKeys[envelope.keyID] else { throw .unknownKey(envelope.keyID) }
        guard envelope.signature.count == 64,
            key.isValidSignature(envelope.signature, for: SignedEnvelope.signedMessage(for: envelope.payload))
        else { throw .badSignature }
        let payload = try CommandPayload(wireBytes: envelope.payload)
        guard payload.version == NK3Wire.version else { throw .unsupportedVersion(payload.version) }
        guard payload.node == node else { throw .wrongNode(expected: node, got: payload.node) }
        guard payload.expiresAt > now else { throw .expired(expiresAt: payload.expiresAt, now: now) }
        guard payload.issuedAt <= now.addingTimeInterval(clockSkew) else {
            throw .notYetValid(issuedAt: payload.issuedAt, now: now)
        }
        guard payload.expiresAt > payload.issuedAt else { throw .malformed("expiresAt is not after issuedAt") }
        // Serials are derived from time (milliseconds since 1970, see ClusterAgents): one far beyond now can only
        // come from a broken or hostile signer, and accepting it would refuse every later envelope until then
        // (2^64-1: forever). Refused before it can become the last accepted serial.
        let limit = Self.serialLimit(now: now, margin: max(serialMargin, clockSkew))
        guard payload.serial <= limit else { throw .serialOutOfRange(serial: payload.serial, limit: limit) }
        if let last = lastAcceptedSerial, payload.serial <= last {
            throw .replayedSerial(serial: payload.serial, lastAccepted: last)
        }
        if let problem = payload.command.contentProblem() {
            throw .malformed(problem)
        }
        return payload
    }
}

/// Helpers for short, readable decoding error messages.
public enum StrictJSON {
    public static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, let ctx):
            return "missing key '\(path(ctx.codingPath + [key]))'"
        case DecodingError.typeMismatch(_, let ctx), DecodingError.valueNotFound(_, let ctx):
            return "wrong type at '\(path(ctx.codingPath))': \(ctx.debugDescription)"
        case DecodingError.dataCorrupted(let ctx):
            return ctx.codingPath.isEmpty ? "invalid JSON" : "invalid value at '\(path(ctx.codingPath))': \(ctx.debugDescription)"
        default:
            return "\(error)"
        }
    }

    static func path(_ keys: [CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }
}

extension Curve25519.Signing.PublicKey {
    /// Parses a public key written as base64 of its 32 raw bytes (the format of `signing.pub` and of the
    /// NixOS module's `signingPublicKeys`).
    public init(base64: String) throws {
        let trimmed = base64.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed()
        guard let data = Data(base64Encoded: String(trimmed)), data.count == 32
        else { throw WireError(.malformed, "signing public key is not base64 of 32 bytes") }
        try self.init(rawRepresentation: data)
    }
}
