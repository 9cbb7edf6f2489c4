import Foundation

/// The rollout flags of `nk3 apply|upgrade|reboot`, turned into plan options with the inventory's defaults.
/// `nk3 demo` goes through the same builder, so a demo honours the inventory's `order` and
/// `disruption_budget` exactly as `nk3 apply` does.
public struct RolloutFlags: Sendable, Hashable {
    /// `--disruption-budget` (nil: the inventory's `disruption_budget`).
    public var disruptionBudget: Int?
    /// `--skip-initial-health`.
    public var skipInitialHealth: Bool
    /// `--allow-quorum-loss`.
    public var allowQuorumLoss: Bool
    /// `--order a,b` (nil: the inventory's `order`).
    public var order: [String]?
    /// `--include-cordoned`.
    public var includeCordoned: Bool
    /// `--skip-drain-preflight`.
    public var skipDrainPreflight: Bool

    /// Makes flags; every default is what the CLI does without the flag.
    public init(
        disruptionBudget: Int? = nil, skipInitialHealth: Bool = false, allowQuorumLoss: Bool = false,
        order: [String]? = nil, includeCordoned: Bool = false, skipDrainPreflight: Bool = false
    ) {
        self.skipDrainPreflight = skipDrainPreflight
        self.disruptionBudget = disruptionBudget
        self.skipInitialHealth = skipInitialHealth
        self.allowQuorumLoss = allowQuorumLoss
        self.order = order
        self.includeCordoned = includeCordoned
    }

    /// The plan options: flags first, then the inventory. A budget below 1 is invalid input (exit 2).
    public func planOptions(_ inventory: Inventory) throws -> RolloutPlan.Options {
        let budget = disruptionBudget ?? inventory.disruptionBudget
        guard budget >= 1 else { throw CoordinatorError(.invalidInput, "--disruption-budget must be at least 1") }
        return RolloutPlan.Options(
            disruptionBudget: budget, skipInitialHealth: skipInitialHealth,
            explicitOrder: order ?? (inventory.rolloutOrder.isEmpty ? nil : inventory.rolloutOrder),
            allowQuorumLoss: allowQuorumLoss, includeCordoned: includeCordoned, skipDrainPreflight: skipDrainPreflight)
    }
}
