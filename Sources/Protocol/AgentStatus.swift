#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What an agent reports at `GET /v1/status`.
public struct AgentStatus: Codable, Sendable, Hashable {
    public var hostname: String
    public var agentVersion: String
    /// Running kernel release (`/proc/sys/kernel/osrelease`, as `uname -r`).
    public var kernel: String
    /// NixOS version of the current system (`/run/current-system/nixos-version`).
    public var nixosVersion: String?
    /// Store path `/run/current-system` points to.
    public var currentSystem: String?
    /// Store path `/run/booted-system` points to.
    public var bootedSystem: String?
    /// Generation number whose `system-N-link` resolves to the current system (nil if none matches).
    public var currentGeneration: Int?
    /// Generation number of the booted system.
    public var bootedGeneration: Int?
    /// Generation the system profile points at (the boot default after switch/boot).
    public var profileGeneration: Int?
    /// Kernel release of the profile's generation, when known (what the next boot runs).
    public var profileKernel: String?
    /// `/proc/sys/kernel/random/boot_id`: changes on every boot.
    public var bootID: String
    public var uptimeSeconds: Double
    /// SHA-256 over the landed configuration files (see `ConfigFiles.hash`).
    public var configHash: String
    /// Per-file SHA-256 of the landed files in /etc/nixos managed by nk3.
    public var files: [String: String]
    /// `nixos` channel URL from `nix-channel --list`, if any.
    public var channel: String?
    /// The exact release the `nixos` channel holds (from the unpacked channel's `.version` files), if known.
    /// Absent from agents that predate it.
    public var channelRelease: ChannelRelease?
    /// Flake mode: the managed `flake.lock` (its digest, the nixpkgs revision it pins and, when small, the file).
    /// Absent on a channel node and from agents that predate flakes.
    public var flakeLock: FlakeLockReport?
    public var lastAcceptedSerial: UInt64?
    /// The operation in progress (apply awaiting confirm, rebuilding, rolling back), if any.
    public var operation: OperationStatus?
    /// The result of the last finished operation.
    public var lastResult: OperationResult?
    public var kubelet: KubeletState
    /// How this node undoes an unconfirmed boot: `trial-boot` (one-shot entry) or `dead-man` (new default,
    /// rollback + reboot when the confirm deadline passes).
    public var rollbackMode: String
    /// A reboot this agent has accepted and not yet carried out (the machine goes down moments after
    /// answering). A coordinator that finds one resumes at "wait for the new boot" instead of draining and
    /// rebooting again. Absent from agents that predate it.
    public var pendingReboot: PendingRebootStatus?

    public init(
        hostname: String, agentVersion: String = NK3Wire.softwareVersion, kernel: String, nixosVersion: String?,
        currentSystem: String?, bootedSystem: String?, currentGeneration: Int?, bootedGeneration: Int?,
        profileGeneration: Int?, profileKernel: String? = nil, bootID: String, uptimeSeconds: Double,
        configHash: String, files: [String: String], channel: String?, lastAcceptedSerial: UInt64?,
        operation: OperationStatus?, lastResult: OperationResult?, kubelet: KubeletState,
        rollbackMode: String = "dead-man", pendingReboot: PendingRebootStatus? = nil,
        channelRelease: ChannelRelease? = nil, flakeLock: FlakeLockReport? = nil
    ) {
        self.flakeLock = flakeLock
        self.channelRelease = channelRelease
        self.hostname = hostname
        self.agentVersion = agentVersion
        self.kernel = kernel
        self.nixosVersion = nixosVersion
        self.currentSystem = currentSystem
        self.bootedSystem = bootedSystem
        self.currentGeneration = currentGeneration
        self.bootedGeneration = bootedGeneration
        self.profileGeneration = profileGeneration
        self.profileKernel = profileKernel
        self.bootID = bootID
        self.uptimeSeconds = uptimeSeconds
        self.configHash = configHash
        self.files = files
        self.channel = channel
        self.lastAcceptedSerial = lastAcceptedSerial
        self.operation = operation
        self.lastResult = lastResult
        self.kubelet = kubelet
        self.rollbackMode = rollbackMode
        self.pendingReboot = pendingReboot
    }
}

/// A reboot an agent has accepted and not yet carried out.
public struct PendingRebootStatus: Codable, Sendable, Hashable {
    /// Boot id when the reboot was requested (the reboot has happened once the agent reports another).
    public var bootID: String
    public var reason: String
    /// Serial of the RebootCommand, when it was one (nil: the agent's own rollback reboot).
    public var serial: UInt64?
    public var requestedAt: Date

    public init(bootID: String, reason: String, serial: UInt64?, requestedAt: Date) {
        self.bootID = bootID
        self.reason = reason
        self.serial = serial
        self.requestedAt = requestedAt
    }
}

/// Kubelet state as only the node can see it (k3s binds healthz to 127.0.0.1:10248: k3s-io/k3s
/// pkg/daemons/agent/agent_linux.go).
public struct KubeletState: Codable, Sendable, Hashable {
    /// systemd unit checked (default `k3s`).
    public var unit: String
    /// `systemctl is-active UNIT` said `active`.
    public var unitActive: Bool
    /// `GET http://127.0.0.1:10248/healthz` answered `ok` (nil: not checked or unreachable).
    public var healthz: Bool?

    public init(unit: String, unitActive: Bool, healthz: Bool?) {
        self.unit = unit
        self.unitActive = unitActive
        self.healthz = healthz
    }
}

/// Phases of an apply, as persisted by the agent and reported in status.
public enum ApplyPhase: String, Codable, Sendable, Hashable, CaseIterable {
    case received
    case staged
    case rebuilding
    /// Rebuild succeeded; waiting for a signed confirm before the deadline.
    case awaitingConfirm = "awaiting_confirm"
    /// Deadline passed or rollback requested; restoring the previous generation and files.
    case rollingBack = "rolling_back"
    /// Confirmed: the new generation is kept.
    case committed
    /// Rebuild failed; old files (and channel) restored.
    case failed
    /// Previous generation restored (for a boot apply: as boot default, with a reboot requested).
    case rolledBack = "rolled_back"
}

/// The operation in progress.
public struct OperationStatus: Codable, Sendable, Hashable {
    public var id: String
    public var serial: UInt64
    public var kind: String
    public var action: RebuildAction?
    public var phase: ApplyPhase
    public var startedAt: Date
    /// Confirm deadline, once armed.
    public var deadline: Date?
    /// Generation recorded before the rebuild: what a rollback returns to.
    public var previousGeneration: Int?
    public var newGeneration: Int?
    /// Boot id at the time the rebuild finished (a `boot` apply re-arms the deadline after a new one).
    public var bootIDAtRebuild: String?

    public init(
        id: String, serial: UInt64, kind: String, action: RebuildAction?, phase: ApplyPhase, startedAt: Date,
        deadline: Date? = nil, previousGeneration: Int? = nil, newGeneration: Int? = nil,
        bootIDAtRebuild: String? = nil
    ) {
        self.id = id
        self.serial = serial
        self.kind = kind
        self.action = action
        self.phase = phase
        self.startedAt = startedAt
        self.deadline = deadline
        self.previousGeneration = previousGeneration
        self.newGeneration = newGeneration
        self.bootIDAtRebuild = bootIDAtRebuild
    }
}

/// How a finished operation ended.
public struct OperationResult: Codable, Sendable, Hashable {
    public enum Outcome: String, Codable, Sendable, Hashable {
        /// Rebuild succeeded and nothing changed (same system path): no confirm needed.
        case unchanged
        case committed
        /// Rebuild failed; old files (and channel) restored.
        case failed
        /// Confirm deadline passed or rollback requested; previous generation restored.
        case rolledBack = "rolled_back"
        case rebooted
    }

    public var id: String
    public var serial: UInt64
    public var outcome: Outcome
    public var message: String
    public var finishedAt: Date
    /// Derivations nix said it would build ("these N derivations will be built").
    public var derivationsBuilt: Int?
    /// Paths nix said it would fetch ("these N paths will be fetched").
    public var pathsFetched: Int?

    public init(
        id: String, serial: UInt64, outcome: Outcome, message: String, finishedAt: Date,
        derivationsBuilt: Int? = nil, pathsFetched: Int? = nil
    ) {
        self.id = id
        self.serial = serial
        self.outcome = outcome
        self.message = message
        self.finishedAt = finishedAt
        self.derivationsBuilt = derivationsBuilt
        self.pathsFetched = pathsFetched
    }
}

/// The agent's answer to an accepted envelope.
public struct EnvelopeReceipt: Codable, Sendable, Hashable {
    public var serial: UInt64
    public var kind: String
    /// Operation id (for apply), to poll `GET /v1/operations/ID`.
    public var operationID: String?
    /// Phase reached when the answer was sent.
    public var phase: ApplyPhase?
    public var message: String

    public init(serial: UInt64, kind: String, operationID: String?, phase: ApplyPhase?, message: String) {
        self.serial = serial
        self.kind = kind
        self.operationID = operationID
        self.phase = phase
        self.message = message
    }
}

/// `GET /v1/operations/ID`: an operation's status, result and rebuild log tail.
public struct OperationReport: Codable, Sendable, Hashable {
    public var operation: OperationStatus?
    public var result: OperationResult?
    public var logTail: String

    public init(operation: OperationStatus?, result: OperationResult?, logTail: String) {
        self.operation = operation
        self.result = result
        self.logTail = logTail
    }
}

/// `GET /v1/files`: the landed configuration files' contents (for the coordinator's diff).
public struct LandedFiles: Codable, Sendable, Hashable {
    public var files: [String: String]
    public init(files: [String: String]) { self.files = files }
}

extension AgentStatus {
    /// Boot id an agent reports when it cannot read its machine's facts (e.g. mid-shutdown).
    public static let unknownBootID = "unknown"

    /// Whether `bootID` is a real boot id. An agent that cannot read its own boot id says nothing about
    /// whether the machine rebooted, so a coordinator must keep waiting.
    public var isBootIDKnown: Bool { !bootID.isEmpty && bootID != Self.unknownBootID }
}

/// `GET /v1/agent-binary/SHA256` (and a finished upload's answer): whether the node has that agent binary.
public struct AgentBinaryPresence: Codable, Sendable, Hashable {
    public var sha256: String
    public var present: Bool
    /// Where it is on the node (what `nk3-agent.nix` names), when present.
    public var path: String?
    public init(sha256: String, present: Bool, path: String?) {
        self.sha256 = sha256
        self.present = present
        self.path = path
    }
}
