#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The signed bytes of an envelope (`SignedEnvelope.payload`), wire version 2:
///
///     header  LF  body
///
/// `header` is the canonical JSON of the payload in which an apply's files are listed as `{name, size}`
/// (names in strictly increasing byte order, so no name twice); `body` is the files' UTF-8 contents
/// concatenated in that order, with nothing before, between or after them. A command that is not an apply
/// has an empty body. The signature covers SHA-256 of header, LF and body together, so file contents are
/// as authenticated as the header, yet never escaped into JSON strings: decoding is a few hundred bytes of
/// JSON plus slicing and UTF-8 validation.
extension CommandPayload {
    /// The payload's wire form, as signed (see the extension's documentation).
    public func wireBytes() throws -> Data {
        let files: [(name: String, content: String)]
        let command: WireCommand
        switch self.command {
        case .apply(let bundle):
            files = bundle.files.map { (name: $0.key, content: $0.value) }
                .sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
            command = .apply(
                WireApply(
                    files: files.map { WireFile(name: $0.name, size: $0.content.utf8.count) }, action: bundle.action,
                    upgrade: bundle.upgrade, nixChannel: bundle.nixChannel,
                    confirmTimeoutSeconds: bundle.confirmTimeoutSeconds, flake: bundle.flake))
        case .confirm(let c):
            files = []
            command = .confirm(c)
        case .reboot(let r):
            files = []
            command = .reboot(r)
        case .rollback(let r):
            files = []
            command = .rollback(r)
        case .stageAgentBinary(let b):
            files = []
            command = .stageAgentBinary(b)
        }
        let header = WireHeader(
            version: version, node: node, serial: serial, issuedAt: issuedAt, expiresAt: expiresAt, command: command)
        var bytes = try CanonicalJSON.encode(header)
        bytes.reserveCapacity(bytes.count + 1 + files.reduce(0) { $0 + $1.content.utf8.count })
        bytes.append(Self.headerEnd)
        for file in files { bytes.append(contentsOf: file.content.utf8) }
        return bytes
    }

    /// Decodes a payload's wire form. This does not verify anything: `EnvelopeVerifier` checks the signature
    /// over these bytes first and the payload's node, window and serial after.
    public init(wireBytes: Data) throws(EnvelopeError) {
        guard let lf = wireBytes.firstIndex(of: Self.headerEnd) else {
            throw .malformed("payload: no line feed after the JSON header")
        }
        let header: WireHeader
        do {
            header = try CanonicalJSON.decode(WireHeader.self, from: wireBytes[..<lf])
        } catch {
            // Signed but undecodable: a bug or version skew on the signer's side, never trusted.
            throw .malformed("payload: \(StrictJSON.describe(error))")
        }
        let body = wireBytes[(lf + 1)...]
        let command: Command
        switch header.command {
        case .apply(let apply):
            command = .apply(
                ApplyBundle(
                    files: try Self.files(apply.files, in: body), action: apply.action, upgrade: apply.upgrade,
                    nixChannel: apply.nixChannel, confirmTimeoutSeconds: apply.confirmTimeoutSeconds, flake: apply.flake))
        case .confirm(let c): command = .confirm(c)
        case .reboot(let r): command = .reboot(r)
        case .rollback(let r): command = .rollback(r)
        case .stageAgentBinary(let b): command = .stageAgentBinary(b)
        }
        if command.kind != "apply", !body.isEmpty {
            throw .malformed(
                "payload: \(body.count) bytes after the header of a \(command.kind) command, which has no files")
        }
        self.init(
            version: header.version, node: header.node, serial: header.serial, issuedAt: header.issuedAt,
            expiresAt: header.expiresAt, command: command)
    }

    private static let headerEnd = UInt8(ascii: "\n")

    /// Cuts `body` into the files `list` names, in order, refusing duplicate or unsorted names, sizes that
    /// do not add up to the body exactly, and content that is not UTF-8.
    private static func files(_ list: [WireFile], in body: Data) throws(EnvelopeError) -> [String: String] {
        var files: [String: String] = [:]
        files.reserveCapacity(list.count)
        var offset = body.startIndex
        var previous: String?
        for entry in list {
            if let previous, !previous.utf8.lexicographicallyPrecedes(entry.name.utf8) {
                throw .malformed(
                    "payload: file '\(entry.name)' listed after '\(previous)': names must be unique and sorted")
            }
            previous = entry.name
            guard entry.size >= 0, entry.size <= body.endIndex - offset else {
                let remaining = body.endIndex - offset
                throw .malformed(
                    "payload: file '\(entry.name)' is listed with \(entry.size) bytes, but \(remaining) remain")
            }
            let end = offset + entry.size
            let content: String? = body.withUnsafeBytes { raw in
                let base = body.startIndex
                return UTF8Text.string(raw.bindMemory(to: UInt8.self)[(offset - base)..<(end - base)])
            }
            guard let content else { throw .malformed("payload: file '\(entry.name)' is not valid UTF-8") }
            files[entry.name] = content
            offset = end
        }
        guard offset == body.endIndex else {
            throw .malformed("payload: \(body.endIndex - offset) bytes after the last listed file")
        }
        return files
    }
}

/// The JSON header of a version-2 payload: `CommandPayload` with an apply's files as names and sizes.
struct WireHeader: Codable {
    var version: Int
    var node: String
    var serial: UInt64
    var issuedAt: Date
    var expiresAt: Date
    var command: WireCommand

    private enum CodingKeys: String, CodingKey { case version, node, serial, issuedAt, expiresAt, command }

    init(version: Int, node: String, serial: UInt64, issuedAt: Date, expiresAt: Date, command: WireCommand) {
        self.version = version
        self.node = node
        self.serial = serial
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.command = command
    }

    init(from decoder: Decoder) throws {
        try decoder.refuseUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        version = try c.decode(Int.self, forKey: .version)
        node = try c.decode(String.self, forKey: .node)
        serial = try c.decode(UInt64.self, forKey: .serial)
        issuedAt = try c.decode(Date.self, forKey: .issuedAt)
        expiresAt = try c.decode(Date.self, forKey: .expiresAt)
        command = try c.decode(WireCommand.self, forKey: .command)
    }
}

/// `Command` as the header carries it: `{"kind": K, K: {…}}`, with the apply's files as `WireFile`s.
enum WireCommand: Codable {
    case apply(WireApply)
    case confirm(ConfirmCommand)
    case reboot(RebootCommand)
    case rollback(RollbackCommand)
    case stageAgentBinary(StageAgentBinaryCommand)

    private enum CodingKeys: String, CodingKey { case kind, apply, confirm, reboot, rollback, stageAgentBinary }

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let kind = try c.decode(String.self, forKey: .kind)
        // The small commands' own Codable is lenient: their fields are checked here.
        func fields(_ key: CodingKeys, _ only: String...) throws {
            try decoder.refuseUnknownKeys { $0 == "kind" || $0 == key.stringValue }
            let nested = try c.nestedContainer(keyedBy: AnyCodingKey.self, forKey: key)
            if let unknown = nested.allKeys.first(where: { !only.contains($0.stringValue) }) {
                throw DecodingError.dataCorrupted(
                    DecodingError.Context(codingPath: c.codingPath + [key, unknown], debugDescription: "unknown field"))
            }
        }
        switch kind {
        case "apply":
            try decoder.refuseUnknownKeys { $0 == "kind" || $0 == "apply" }
            self = .apply(try c.decode(WireApply.self, forKey: .apply))
        case "confirm":
            try fields(.confirm, "applySerial")
            self = .confirm(try c.decode(ConfirmCommand.self, forKey: .confirm))
        case "reboot":
            try fields(.reboot, "reason")
            self = .reboot(try c.decode(RebootCommand.self, forKey: .reboot))
        case "rollback":
            try fields(.rollback, "reason")
            self = .rollback(try c.decode(RollbackCommand.self, forKey: .rollback))
        case "stageAgentBinary":
            try fields(.stageAgentBinary, "sha256", "size")
            self = .stageAgentBinary(try c.decode(StageAgentBinaryCommand.self, forKey: .stageAgentBinary))
        default:
            throw DecodingError.dataCorruptedError(
                forKey: .kind, in: c, debugDescription: "unknown command kind '\(kind)'")
        }
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .apply(let v):
            try c.encode("apply", forKey: .kind)
            try c.encode(v, forKey: .apply)
        case .confirm(let v):
            try c.encode("confirm", forKey: .kind)
            try c.encode(v, forKey: .confirm)
        case .reboot(let v):
            try c.encode("reboot", forKey: .kind)
            try c.encode(v, forKey: .reboot)
        case .rollback(let v):
            try c.encode("rollback", forKey: .kind)
            try c.encode(v, forKey: .rollback)
        case .stageAgentBinary(let v):
            try c.encode("stageAgentBinary", forKey: .kind)
            try c.encode(v, forKey: .stageAgentBinary)
        }
    }
}

/// `ApplyBundle` as the header carries it: the files' names and sizes; their contents are the body.
struct WireApply: Codable {
    var files: [WireFile]
    var action: RebuildAction
    var upgrade: Bool
    var nixChannel: String?
    var confirmTimeoutSeconds: Int
    /// Absent (not null) for a channel bundle, so its header is what it was before flakes.
    var flake: String?

    private enum CodingKeys: String, CodingKey {
        case files, action, upgrade, nixChannel, confirmTimeoutSeconds, flake
    }

    init(
        files: [WireFile], action: RebuildAction, upgrade: Bool, nixChannel: String?, confirmTimeoutSeconds: Int,
        flake: String?
    ) {
        self.flake = flake
        self.files = files
        self.action = action
        self.upgrade = upgrade
        self.nixChannel = nixChannel
        self.confirmTimeoutSeconds = confirmTimeoutSeconds
    }

    init(from decoder: Decoder) throws {
        try decoder.refuseUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        files = try c.decode([WireFile].self, forKey: .files)
        action = try c.decode(RebuildAction.self, forKey: .action)
        upgrade = try c.decode(Bool.self, forKey: .upgrade)
        nixChannel = try c.decodeIfPresent(String.self, forKey: .nixChannel)
        confirmTimeoutSeconds = try c.decode(Int.self, forKey: .confirmTimeoutSeconds)
        flake = try c.decodeIfPresent(String.self, forKey: .flake)
    }
}

/// One file of an apply: its name and the number of its bytes in the payload body.
struct WireFile: Codable {
    var name: String
    var size: Int

    private enum CodingKeys: String, CodingKey { case name, size }

    init(name: String, size: Int) {
        self.name = name
        self.size = size
    }

    init(from decoder: Decoder) throws {
        try decoder.refuseUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        size = try c.decode(Int.self, forKey: .size)
    }
}
