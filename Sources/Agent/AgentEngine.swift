#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NK3Protocol

/// The seam between the agent's HTTPS front end (routing, roles, envelope verification, serial
/// persistence) and its apply engine (state machine, system backend, status, metrics).
///
/// The server calls `handle` only for envelopes that verified and whose serial has been persisted.
public protocol AgentEngine: Sendable {
    /// Current status. `lastAcceptedSerial` is filled in by the server from its serial store.
    func status() async -> AgentStatus
    /// Contents of the landed nk3-managed files in the NixOS configuration directory.
    func landedFiles() async -> [String: String]
    /// One operation's status, result and log tail, or nil if unknown.
    func operation(id: String) async -> OperationReport?
    /// The same, but while the operation is still being applied (received, staged, rebuilding) the answer waits
    /// until it is not — awaiting a confirm, finished or rolling back — or `wait` has passed (a long poll: the
    /// coordinator learns the outcome at once, with one request instead of one per poll interval).
    func operation(id: String, waitingUpTo wait: Duration) async -> OperationReport?
    /// Prometheus text exposition of the agent's metrics.
    func metricsText() async -> String
    /// Carries out a verified command (apply, confirm, reboot, rollback). Throws a `WireError`
    /// (e.g. `.busy`, `.invalidState`) to refuse it; the answer is sent before long work (a rebuild
    /// or a reboot) completes.
    func handle(_ payload: CommandPayload) async throws(WireError) -> EnvelopeReceipt
    /// The answer to the command with this serial has been written out (or writing it failed). A reboot
    /// waits for this before the machine goes down.
    func responseSent(serial: UInt64) async
}

extension AgentEngine {
    /// Engines with nothing to wait for ignore it.
    public func responseSent(serial: UInt64) async {}

    /// Engines that cannot wait answer at once.
    public func operation(id: String, waitingUpTo wait: Duration) async -> OperationReport? {
        await operation(id: id)
    }
}
