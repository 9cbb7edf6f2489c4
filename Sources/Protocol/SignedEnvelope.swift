import Foundation

/// A signed command as it travels to an agent: the exact payload bytes, the Ed25519 signature over
/// `NK3Wire.signingContext + payload`, and the id of the signing key.
///
/// The payload is carried as bytes (base64 in JSON), never re-encoded: what the agent verifies is
/// exactly what was signed, whatever JSON encoder either side uses.
public struct SignedEnvelope: Codable, Sendable, Hashable {
    public var version: Int
    /// `SigningKeyID` of the key that signed (hex of the first 8 bytes of SHA-256 of the raw public key).
    public var keyID: String
    /// Canonical JSON of a `CommandPayload`.
    public var payload: Data
    /// Ed25519 signature (64 bytes).
    public var signature: Data

    public init(version: Int = NK3Wire.version, keyID: String, payload: Data, signature: Data) {
        self.version = version
        self.keyID = keyID
        self.payload = payload
        self.signature = signature
    }
}
