import Foundation

/// Version numbers and limits of the nk3 wire protocol, shared by agent and coordinator.
public enum NK3Wire {
    /// Version of the envelope and payload format. Bumped on incompatible change.
    public static let version = 1
    /// Version string of this nk3 build, reported by agents and printed by `--version`.
    public static let softwareVersion = "0.1.0"
    /// Largest request body an agent accepts (a bundle of configuration files, base64-wrapped).
    public static let maxBodyBytes = 4 * 1024 * 1024
    /// Domain-separation prefix signed together with every payload, so that a signature over some other
    /// nk3 (or non-nk3) structure can never be replayed as a command.
    public static let signingContext = Array("nk3-command-envelope-v1\u{0}".utf8)
    /// Default tolerance for clocks running ahead of each other when checking `issuedAt`.
    public static let defaultClockSkew: TimeInterval = 120
}
