import Crypto

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A signed command as it travels to an agent: the exact payload bytes, the Ed25519 signature over
/// `NK3Wire.signingContext + SHA-256(payload)`, and the id of the signing key.
///
/// The payload is carried as bytes (base64 in JSON), never re-encoded: what the agent verifies is
/// exactly what was signed, whatever JSON encoder either side uses. Its layout is
/// `CommandPayload.wireBytes()`: a small JSON header line, then the raw file contents of an apply.
public struct SignedEnvelope: Codable, Sendable, Hashable {
    public var version: Int
    /// `SigningKeyID` of the key that signed (hex of the first 8 bytes of SHA-256 of the raw public key).
    public var keyID: String
    /// `CommandPayload.wireBytes()` of the command.
    public var payload: Data
    /// Ed25519 signature (64 bytes) over `SignedEnvelope.signedMessage(for: payload)`.
    public var signature: Data

    public init(version: Int = NK3Wire.version, keyID: String, payload: Data, signature: Data) {
        self.version = version
        self.keyID = keyID
        self.payload = payload
        self.signature = signature
    }

    /// The bytes the Ed25519 signature is over: the signing context, then SHA-256 of the payload.
    ///
    /// Hashing first keeps Ed25519's own SHA-512 pass to 56 bytes whatever the bundle size, and lets the
    /// verifier authenticate every payload byte (file contents included) before parsing any of them.
    public static func signedMessage(for payload: Data) -> Data {
        var message = Data(NK3Wire.signingContext)
        message.append(contentsOf: SHA256.hash(data: payload))
        return message
    }

    private enum CodingKeys: String, CodingKey { case version, keyID, payload, signature }

    /// Decodes strictly: an unknown field is an error (the agent's fast path is `init(json:)`, equally strict).
    public init(from decoder: Decoder) throws {
        try decoder.refuseUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        version = try c.decode(Int.self, forKey: .version)
        keyID = try c.decode(String.self, forKey: .keyID)
        payload = try c.decode(Data.self, forKey: .payload)
        signature = try c.decode(Data.self, forKey: .signature)
    }
}

/// A coding key for any field name, to list the fields a JSON object really has.
struct AnyCodingKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

extension Decoder {
    /// Throws `DecodingError.dataCorrupted` if the object being decoded has a field that is not one of
    /// `Known`'s keys (JSONDecoder itself ignores unknown fields).
    func refuseUnknownKeys<Known: CodingKey>(_ known: Known.Type) throws {
        try refuseUnknownKeys { Known(stringValue: $0) != nil }
    }

    /// Throws `DecodingError.dataCorrupted` if the object being decoded has a field `isKnown` says no to.
    func refuseUnknownKeys(allowing isKnown: (String) -> Bool) throws {
        let all = try container(keyedBy: AnyCodingKey.self).allKeys
        if let unknown = all.first(where: { !isKnown($0.stringValue) }) {
            throw DecodingError.dataCorrupted(
                DecodingError.Context(codingPath: codingPath + [unknown], debugDescription: "unknown field"))
        }
    }
}
