#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The signed content of an envelope: who it is for, when it is valid, its serial, and what to do.
public struct CommandPayload: Codable, Sendable, Hashable {
    public var version: Int
    /// Hostname of the target node (as in the inventory). An agent refuses any other node's command.
    public var node: String
    /// Strictly increasing per node; an agent refuses a serial not greater than the last it accepted.
    public var serial: UInt64
    public var issuedAt: Date
    public var expiresAt: Date
    public var command: Command

    public init(
        version: Int = NK3Wire.version, node: String, serial: UInt64, issuedAt: Date, expiresAt: Date,
        command: Command
    ) {
        self.version = version
        self.node = node
        self.serial = serial
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.command = command
    }
}

/// What a signed envelope asks the agent to do.
public enum Command: Codable, Sendable, Hashable {
    case apply(ApplyBundle)
    case confirm(ConfirmCommand)
    case reboot(RebootCommand)
    case rollback(RollbackCommand)
    /// Authorizes one upload of an agent binary (`PUT /v1/agent-binary/SHA256`); travels in that request's
    /// header, never to `POST /v1/envelopes`.
    case stageAgentBinary(StageAgentBinaryCommand)

    /// Short name used in logs, metrics and JSON output.
    public var kind: String {
        switch self {
        case .apply: return "apply"
        case .confirm: return "confirm"
        case .reboot: return "reboot"
        case .rollback: return "rollback"
        case .stageAgentBinary: return "stageAgentBinary"
        }
    }

    private enum CodingKeys: String, CodingKey { case kind, apply, confirm, reboot, rollback, stageAgentBinary }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let kind = try c.decode(String.self, forKey: .kind)
        switch kind {
        case "apply": self = .apply(try c.decode(ApplyBundle.self, forKey: .apply))
        case "confirm": self = .confirm(try c.decode(ConfirmCommand.self, forKey: .confirm))
        case "reboot": self = .reboot(try c.decode(RebootCommand.self, forKey: .reboot))
        case "rollback": self = .rollback(try c.decode(RollbackCommand.self, forKey: .rollback))
        case "stageAgentBinary": self = .stageAgentBinary(try c.decode(StageAgentBinaryCommand.self, forKey: .stageAgentBinary))
        default:
            throw DecodingError.dataCorruptedError(
                forKey: .kind, in: c, debugDescription: "unknown command kind '\(kind)'")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(kind, forKey: .kind)
        switch self {
        case .apply(let v): try c.encode(v, forKey: .apply)
        case .confirm(let v): try c.encode(v, forKey: .confirm)
        case .reboot(let v): try c.encode(v, forKey: .reboot)
        case .rollback(let v): try c.encode(v, forKey: .rollback)
        case .stageAgentBinary(let v): try c.encode(v, forKey: .stageAgentBinary)
        }
    }
}

/// `nixos-rebuild` action an apply runs.
public enum RebuildAction: String, Codable, Sendable, Hashable, CaseIterable {
    /// Build, make the boot default and activate now.
    case `switch`
    /// Build and make the boot default; takes effect after a reboot.
    case boot
    /// Build and activate now without touching the boot default (gone after reboot).
    case test
}

/// A configuration bundle: the files to land in /etc/nixos and how to rebuild.
public struct ApplyBundle: Codable, Sendable, Hashable {
    /// File name (relative to /etc/nixos, no directories) → content.
    public var files: [String: String]
    public var action: RebuildAction
    /// Pass `--upgrade` (update the `nixos` channel first).
    public var upgrade: Bool
    /// Channel URL to enforce as `nixos` before an upgrade (e.g. https://nixos.org/channels/nixos-24.05).
    public var nixChannel: String?
    /// Seconds the agent waits for a signed confirm before rolling back by itself.
    public var confirmTimeoutSeconds: Int
    /// Flake mode: the `nixosConfigurations` attribute to build from the configuration directory's `flake.nix`
    /// (`nixos-rebuild ACTION --flake path:/etc/nixos#NAME --no-write-lock-file`); nil builds `configuration.nix`
    /// through the channels. In flake mode `upgrade` updates the lock's `nixpkgs` input instead of a channel.
    public var flake: String?

    public init(
        files: [String: String], action: RebuildAction, upgrade: Bool = false, nixChannel: String? = nil,
        confirmTimeoutSeconds: Int = 600, flake: String? = nil
    ) {
        self.flake = flake
        self.files = files
        self.action = action
        self.upgrade = upgrade
        self.nixChannel = nixChannel
        self.confirmTimeoutSeconds = confirmTimeoutSeconds
    }

    /// Validates names and sizes; returns a message for the first problem found.
    public func validationProblem() -> String? {
        if files.isEmpty { return "bundle has no files" }
        guard files["configuration.nix"] != nil else { return "bundle has no configuration.nix" }
        for name in files.keys {
            if !ApplyBundle.isValidFileName(name) {
                return "invalid file name '\(SignedText.quoted(name))': only [A-Za-z0-9._-], starting with neither a dot "
                    + "nor a dash, at most \(ApplyBundle.maxFileNameLength) characters, no directories"
            }
        }
        if !AgentLimits.confirmTimeoutSeconds.contains(confirmTimeoutSeconds) {
            return "confirmTimeoutSeconds \(confirmTimeoutSeconds) out of range "
                + "\(AgentLimits.confirmTimeoutSeconds.lowerBound)…\(AgentLimits.confirmTimeoutSeconds.upperBound)"
        }
        if let attribute = flake {
            if !ApplyBundle.isValidFlakeAttribute(attribute) {
                return "invalid flake attribute '\(SignedText.quoted(attribute))': only [A-Za-z0-9_-], starting with "
                    + "neither a dash nor a digit, at most 63 characters"
            }
            if files[FlakeLock.flakeFile] == nil { return "a flake bundle has no flake.nix" }
            // With --no-write-lock-file and no (or an incomplete) lock, Nix locks the inputs afresh in memory, to
            // whatever they point at now, and only warns "not writing modified lock file" (NixOS/nix
            // src/libflake/flake.cc, lockFlake): the node would build a nixpkgs nobody chose. An upgrade carries
            // one too: the lock it updates is then a managed file, restored by a rollback.
            if files[FlakeLock.lockFile] == nil { return "a flake bundle has no flake.lock" }
            if nixChannel != nil { return "a flake bundle names no channel (its flake.lock pins nixpkgs)" }
        }
        if flake == nil, files[FlakeLock.flakeFile] != nil {
            // nixos-rebuild without --flake takes /etc/nixos/flake.nix as an implied `--flake` (nixpkgs
            // pkgs/os-specific/linux/nixos-rebuild), unlocked: a flake is only built as one, with `flake` set.
            return "a bundle with flake.nix must name the flake attribute to build (flake)"
        }
        if let ch = nixChannel {
            // `nix-channel --add URL` writes "URL NAME" as one line of ~/.nix-channels and reads it back split at
            // whitespace (nix: src/nix-channel/nix-channel.cc, readChannels): a space or a line break in the URL
            // would add or change channels. A URL has neither (RFC 3986 §2: they are percent-encoded).
            if let problem = SignedText.problem(ch, field: "nixChannel", maxBytes: SignedText.maxURLBytes, allowSpaces: false) {
                return problem
            }
            if !(ch.hasPrefix("https://") || ch.hasPrefix("http://") || ch.hasPrefix("file://")) {
                // nix-channel --add rejects other schemes with "invalid channel URL" (NixOS/nix
                // src/nix-channel/nix-channel.cc).
                return "invalid channel URL '\(ch)': must start with https://, http:// or file://"
            }
        }
        return nil
    }

    /// Flake attribute names an agent builds: a hostname-like name, `[A-Za-z_][A-Za-z0-9_-]*`, at most 63 bytes —
    /// a Nix identifier (the Nix manual, "Identifiers") without `'`, so it reads the same quoted or bare in
    /// `nixosConfigurations.NAME` and in the `#NAME` fragment of a flake reference, where a `.` would split it.
    public static func isValidFlakeAttribute(_ name: String) -> Bool {
        let u = Array(name.utf8)
        guard let first = u.first, u.count <= 63 else { return false }
        func letter(_ c: UInt8) -> Bool { (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F }
        return letter(first) && u.allSatisfy { letter($0) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D }
    }

    /// Longest file name an agent accepts.
    public static let maxFileNameLength = 128

    /// File names an agent accepts: a flat name in /etc/nixos, no path separators, no dot files, and no leading
    /// dash (a name such as `-rf` reads as an option to any command it is passed to).
    public static func isValidFileName(_ name: String) -> Bool {
        !name.hasPrefix(".") && SignedText.isPortableName(name, maxBytes: maxFileNameLength)
    }
}

/// Confirms the apply accepted with serial `applySerial`: the node is healthy, keep the new generation.
public struct ConfirmCommand: Codable, Sendable, Hashable {
    public var applySerial: UInt64
    public init(applySerial: UInt64) { self.applySerial = applySerial }
}

/// Reboot the node. The agent answers before the machine goes down.
public struct RebootCommand: Codable, Sendable, Hashable {
    public var reason: String
    public init(reason: String) { self.reason = reason }
}

/// Roll back the apply in progress now instead of waiting for its deadline.
public struct RollbackCommand: Codable, Sendable, Hashable {
    public var reason: String
    public init(reason: String) { self.reason = reason }
}

/// Lets the coordinator upload one agent binary, named by its SHA-256, to the node's binary directory. The upload
/// changes nothing by itself: the node runs it only once a signed bundle's `nk3-agent.nix` names the same digest
/// (Nix refuses any other file for it), and through the usual apply with its rollback.
public struct StageAgentBinaryCommand: Codable, Sendable, Hashable {
    /// Lowercase hex SHA-256 of the binary (64 digits).
    public var sha256: String
    /// Its size in bytes.
    public var size: Int
    public init(sha256: String, size: Int) {
        self.sha256 = sha256
        self.size = size
    }

    /// The largest agent binary an agent takes (a release nk3-agent with the Swift runtime linked in is
    /// about 100 MiB unstripped; the margin is for growth).
    public static let maxSize = 512 * 1024 * 1024

    /// What is wrong with the fields, or nil.
    public var validationProblem: String? {
        if sha256.count != 64 || !sha256.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) {
            return "sha256 must be 64 lowercase hex digits"
        }
        if size <= 0 || size > Self.maxSize { return "size must be from 1 to \(Self.maxSize) bytes, not \(size)" }
        return nil
    }
}
