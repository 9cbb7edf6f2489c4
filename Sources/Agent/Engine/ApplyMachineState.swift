#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NK3Protocol

// The apply machine's persisted types (see ApplyMachine.swift for the transitions).
extension ApplyMachine {
    /// What was there before the apply touched anything: restored on failure or rollback.
    public struct Baseline: Codable, Sendable, Hashable {
        /// Every configuration-directory name the apply may change, as it was (content, mode, link target or
        /// absent), and the managed-file record.
        public var snapshot: ConfigSnapshot
        public var channel: ChannelState
        /// Generations before the rebuild: the exact previous generation a rollback returns to.
        public var generations: GenerationState
        /// The boot loader's one-shot mechanism, if the machine offers one: a boot apply then runs as a trial
        /// boot (nil: dead-man rollback only).
        public var trialBootLoader: TrialBootLoader?

        public init(
            snapshot: ConfigSnapshot, channel: ChannelState, generations: GenerationState,
            trialBootLoader: TrialBootLoader? = nil
        ) {
            self.snapshot = snapshot
            self.channel = channel
            self.generations = generations
            self.trialBootLoader = trialBootLoader
        }

        /// A baseline whose saved files are these regular files (mode 0644), which were the managed set.
        public init(files: [String: String], channel: ChannelState, generations: GenerationState) {
            self.init(snapshot: ConfigSnapshot(files: files), channel: channel, generations: generations)
        }

        private enum CodingKeys: String, CodingKey { case snapshot, files, channel, generations, trialBootLoader }

        /// Reads both this form and the one agents before snapshots persisted (`files`: the managed files'
        /// text), so that an apply in flight survives an agent upgrade (a boot-mode apply reboots into the new
        /// agent while it awaits its confirm).
        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            if let snapshot = try c.decodeIfPresent(ConfigSnapshot.self, forKey: .snapshot) {
                self.snapshot = snapshot
            } else {
                snapshot = ConfigSnapshot(files: try c.decode([String: String].self, forKey: .files))
            }
            channel = try c.decode(ChannelState.self, forKey: .channel)
            generations = try c.decode(GenerationState.self, forKey: .generations)
            trialBootLoader = try c.decodeIfPresent(TrialBootLoader.self, forKey: .trialBootLoader)
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(snapshot, forKey: .snapshot)
            try c.encode(channel, forKey: .channel)
            try c.encode(generations, forKey: .generations)
            try c.encodeIfPresent(trialBootLoader, forKey: .trialBootLoader)
        }
    }

    /// Phases of an apply in flight (terminal outcomes live in `State.lastResult`).
    public enum Phase: String, Codable, Sendable, Hashable {
        case received, staging, rebuilding, reverting, awaitingConfirm, rollingBack
        /// Trial boot: making the previous generation the boot default again and the new one the one-shot entry.
        case armingTrial
        /// Trial boot, confirmed: making the new generation the boot default.
        case committing

        /// The wire phase reported in status.
        public var wire: ApplyPhase {
            switch self {
            case .received: return .received
            case .staging: return .staged
            case .rebuilding, .armingTrial: return .rebuilding
            case .reverting, .rollingBack: return .rollingBack
            case .awaitingConfirm, .committing: return .awaitingConfirm
            }
        }
    }

    /// The apply in flight.
    public struct Apply: Codable, Sendable, Hashable {
        public var id: String
        public var serial: UInt64
        public var bundle: ApplyBundle
        public var startedAt: Date
        public var phase: Phase
        public var baseline: Baseline?
        /// Undo by boot default + reboot rather than live activation.
        public var bootMode = false
        /// The rebuild's activation asked for a reboot (exit 100).
        public var rebootRequiredByRebuild = false
        public var newGeneration: Int?
        public var newSystem: String?
        public var bootIDAtRebuild: String?
        /// Boot id under which the current deadline was armed (a boot-mode apply re-arms under a new one).
        public var deadlineBootID: String?
        public var deadline: Date?
        /// Why the apply failed (the tool's error text), while reverting.
        public var failure: String?
        public var rollbackReason: String?
        /// Set when the apply runs as a trial boot: the loader whose one-shot entry boots the new generation.
        public var trialBoot: TrialBootLoader?
        /// The trial boot failed: the machine came back on the previous generation (the boot loader's default).
        public var trialFellBack: Bool?
        public var derivationsToBuild: Int?
        public var pathsToFetch: Int?
    }

    /// A reboot that was asked for and has not been seen to happen yet.
    public struct PendingReboot: Codable, Sendable, Hashable {
        /// Boot id when the reboot was requested: seeing it again at start means the reboot did not happen.
        public var bootID: String
        public var reason: String
        public var serial: UInt64?
        public var requestedAt: Date
        /// Record a `rebooted` result once the new boot is seen (a RebootCommand, not a rollback's reboot).
        public var recordResult: Bool
    }

    /// Everything the agent persists.
    public struct State: Codable, Sendable, Hashable {
        public var apply: Apply?
        public var lastResult: OperationResult?
        public var rollbacksTotal = 0
        public var pendingReboot: PendingReboot?
        /// Boot id seen at the last agent start.
        public var bootID: String?

        public init() {}
    }
}
