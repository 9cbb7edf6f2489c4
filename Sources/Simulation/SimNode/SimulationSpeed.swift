import Foundation
import NK3Agent

/// How fast simulated system operations (rebuilds, reboots, kubelet start-up, pod start-up) run — a SIMULATION
/// setting. Time itself comes from an `AgentClock` (real time by default), so a 60 s simulated reboot at
/// `.factor(60)` takes one real second and at `.instant` takes none.
public enum SimulationSpeed: Sendable, Hashable, CustomStringConvertible {
    /// Every system operation takes zero time (benchmarks of coordinator overhead).
    case instant
    /// Simulated durations are divided by this factor (`.factor(1)` is real time).
    case factor(Double)

    /// Real time.
    public static let realTime = SimulationSpeed.factor(1)

    /// Parses `instant`, `realtime`, or a number (`60`, `60x`).
    public init?(parsing text: String) {
        let t = text.lowercased().trimmingCharacters(in: .whitespaces)
        if t == "instant" {
            self = .instant
        } else if t == "realtime" || t == "real-time" {
            self = .realTime
        } else if let f = Double(t.hasSuffix("x") ? String(t.dropLast()) : t), f > 0, f.isFinite {
            self = .factor(f)
        } else {
            return nil
        }
    }

    /// Real seconds that `simulated` seconds take at this speed.
    public func realSeconds(_ simulated: TimeInterval) -> TimeInterval {
        switch self {
        case .instant: return 0
        case .factor(let f): return max(0, simulated) / f
        }
    }

    /// Waits for `simulated` seconds of simulated work on `clock` (no suspension at all for `.instant` or zero).
    public func sleep(_ simulated: TimeInterval, on clock: any AgentClock) async throws {
        let real = realSeconds(simulated)
        guard real > 0 else { return }
        try await clock.sleep(until: clock.now().addingTimeInterval(real))
    }

    public var description: String {
        switch self {
        case .instant: return "instant"
        case .factor(let f): return f == 1 ? "real time" : "\(f)x"
        }
    }
}

/// Simulated durations of system operations, in simulated seconds (scaled by `SimulationSpeed`).
public struct SimulatedTimings: Sendable, Hashable {
    /// `nixos-rebuild` that builds derivations.
    public var rebuild: TimeInterval = 30
    /// `nixos-rebuild` with nothing to build (evaluation only).
    public var rebuildNothingToBuild: TimeInterval = 4
    /// `nix-channel --update` download.
    public var channelUpdate: TimeInterval = 5
    /// `switch-to-configuration` (also `activate`).
    public var activation: TimeInterval = 3
    /// From `reboot()` until the machine has booted again (the agent is down meanwhile).
    public var rebootDowntime: TimeInterval = 60
    /// From boot until the kubelet reports Ready.
    public var kubeletReadyAfterBoot: TimeInterval = 15
    /// From scheduling until a pod is Ready.
    public var podStartup: TimeInterval = 5

    /// The defaults above.
    public init() {}
}
