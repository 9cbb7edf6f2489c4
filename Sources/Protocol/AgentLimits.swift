/// The agent's value ranges, in one place: the agent's config reader (`AgentConfig`) and bundle check
/// (`ApplyBundle`), nk3's inventory parser (`agent_port`, `timeouts.confirm`) and the NixOS module's option
/// types (`nix/module.nix`: `types.ints.between 1 65535` and `types.ints.between 10 86400`, checked against
/// these by `NixModuleEvalTests`) all accept exactly these values.
public enum AgentLimits {
    /// TCP port of the agent's mTLS server (0 means "any port" to bind(2) and is refused).
    public static let port: ClosedRange<Int> = 1...65535
    /// Seconds an agent waits for a signed confirm before it rolls back by itself: at least 10 s (a rebuild
    /// answer and a confirm need a round trip), at most a day.
    public static let confirmTimeoutSeconds: ClosedRange<Int> = 10...86400
}
