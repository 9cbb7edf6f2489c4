#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Version numbers and limits of the nk3 wire protocol, shared by agent and coordinator.
public enum NK3Wire {
    /// Version of the envelope and payload format. Bumped on incompatible change.
    ///
    /// 2: the signature covers `signingContext` + SHA-256 of the payload, and the payload is a JSON header
    /// line followed by the raw file contents (see `CommandPayload.wireBytes()`). 1 signed the payload
    /// itself, a JSON document with every file as a JSON string.
    public static let version = 2
    /// Version string of this nk3 build, reported by agents and printed by `--version`.
    public static let softwareVersion = "0.1.0"
    /// Largest request body an agent accepts (a bundle of configuration files, base64-wrapped).
    public static let maxBodyBytes = 4 * 1024 * 1024
    /// Domain-separation prefix signed together with the SHA-256 of every payload, so that a signature over
    /// some other nk3 (or non-nk3) structure, or over a version-1 payload, can never be replayed as a command.
    public static let signingContext = Array("nk3-command-envelope-v2\u{0}".utf8)
    /// Default tolerance for clocks running ahead of each other when checking `issuedAt`.
    public static let defaultClockSkew: TimeInterval = 120
    /// How far a serial may run ahead of an agent's clock (serials are milliseconds since 1970): a serial signed
    /// too far ahead would lock the agent out until its clock catches up, at most this long.
    public static let serialMargin: TimeInterval = 3600
    /// The request header of `PUT /v1/agent-binary/SHA256` that carries its signed `stageAgentBinary` envelope
    /// (base64 of the envelope's JSON).
    public static let uploadEnvelopeHeader = "X-NK3-Envelope"
}
