import Foundation
import Logging
import NK3Agent
import NK3Protocol
import Synchronization

/// How a generation fails to boot on the simulated node (an injected fault).
public enum BootFailure: String, Sendable, Hashable {
    /// The kernel panics or the initrd cannot mount the root: the machine never comes up (no boot id).
    case kernelPanics = "kernel-panics"
    /// The system comes up but the agent never starts (a broken unit, a bad agent package).
    case agentNeverStarts = "agent-never-starts"
}

// The simulated node's boot loader and power — a SIMULATION of what GRUB and systemd-boot do on NixOS
// (docs/RELIABILITY.md#trial-boot; nixpkgs nixos/modules/system/boot/loader/grub/install-grub.pl and
// systemd-boot/systemd-boot-builder.py):
// - a default entry: `switch-to-configuration switch|boot` of a generation (a rebuild, an activation, or
//   `setBootDefault`) makes it the default; the system profile is a separate thing;
// - a one-shot entry (`grub-reboot`, `bootctl set-oneshot`), only where the node has a trial-boot loader; the
//   next boot consumes it whether or not that boot succeeds (GRUB clears `next_entry` before booting,
//   systemd-boot removes `LoaderEntryOneShot` when it reads it);
// - a boot of a generation whose kernel never boots leaves the machine down until a reset (watchdog,
//   `panic=N`, a person), which boots the default entry.
extension SimulatedNode {
    func setBootDefault(generation number: Int, incarnation: Int?) async throws {
        try state.withLock { s in
            try checkAlive(s, incarnation)
            guard s.generations[number] != nil else {
                throw NodeSystemError(.notFound, "generation \(number) does not exist (system-\(number)-link is missing)")
            }
        }
        try await speed.sleep(timings.activation, on: clock)
        try state.withLock { s in
            try checkAlive(s, incarnation)
            s.bootDefault = number
        }
        logger.info("[simulation] switch-to-configuration boot of generation \(number): the boot loader's default")
        emit(.systemChanged)
    }

    func setBootOnce(generation number: Int?, incarnation: Int?) throws {
        guard let loader = trialBootLoaderKind else {
            throw NodeSystemError(
                .invalidInput, "[simulation] \(hostname) has no trial-boot loader; cannot set a one-shot entry")
        }
        try state.withLock { s in
            try checkAlive(s, incarnation)
            if let number, s.generations[number] == nil {
                throw NodeSystemError(.notFound, "generation \(number) does not exist (system-\(number)-link is missing)")
            }
            s.bootOnce = number
        }
        let what = loader == .grub ? "grub-reboot" : "bootctl set-oneshot"
        logger.info("[simulation] \(what) \(number.map { "generation \($0)" } ?? "(cleared)")")
    }

    /// A hardware reset (a watchdog firing, `panic=N`, a person at the console): the machine goes down at once
    /// and boots again — the one-shot entry if one is still set, else the default entry.
    public func reset() {
        guard state.withLock({ !$0.isShutDown }) else { return }
        state.withLock { s in
            s.power = .down
            s.incarnation += 1
            s.kubeletActive = false
            s.kubeletReady = false
        }
        logger.warning("[simulation] \(hostname) is reset (watchdog, panic=N or a person at the console)")
        emit(.poweredDown)
        emit(.kubelet(ready: false))
        boot()
    }

    func reboot(incarnation: Int?) throws {
        enum Outcome { case hang, down }
        let outcome: Outcome = try state.withLock { s in
            try checkAlive(s, incarnation)
            if s.faults.rebootHangs { return .hang }
            s.power = .down
            s.incarnation += 1
            s.kubeletActive = false
            s.kubeletReady = false
            return .down
        }
        if outcome == .hang {
            logger.warning("[simulation] reboot of \(hostname) hangs (injected fault): the old boot stays up")
            return
        }
        logger.info("[simulation] \(hostname) is rebooting (down for \(timings.rebootDowntime) simulated s)")
        emit(.poweredDown)
        emit(.kubelet(ready: false))
        spawn { node in
            try await node.speed.sleep(node.timings.rebootDowntime, on: node.clock)
            if node.state.withLock({ $0.faults.neverReturnsAfterReboot }) {
                node.logger.warning("[simulation] \(node.hostname) does not come back after the reboot (injected fault)")
                return
            }
            node.boot()
        }
    }

    /// Boots the one-shot entry if set (consuming it), else the default entry.
    func boot() {
        enum Outcome {
            case up(bootID: String, kernel: String, agent: Bool)
            case hangs(generation: Int, resets: Bool)
        }
        let now = clock.now()
        let outcome: Outcome = state.withLock { s in
            let number = s.bootOnce ?? s.bootDefault
            s.bootOnce = nil
            let g = s.generations[number]
            let path = g?.storePath ?? s.currentSystem
            s.boots += 1
            let failure = s.unbootable[path]
            if failure == .kernelPanics {
                s.failedBoots += 1
                return .hangs(generation: number, resets: s.faults.resetAfterFailedBoot)
            }
            s.bootID = UUID().uuidString.lowercased()
            s.bootedAt = now
            s.bootedSystem = path
            s.currentSystem = path
            s.runningKernel = s.store[path]?.kernel ?? g?.kernel ?? s.runningKernel
            s.power = .up
            s.kubeletActive = true
            s.kubeletReady = false
            return .up(bootID: s.bootID, kernel: s.runningKernel, agent: failure != .agentNeverStarts)
        }
        switch outcome {
        case .hangs(let generation, let resets):
            let then = resets ? "a reset follows" : "the machine hangs until a reset"
            logger.warning(
                "[simulation] generation \(generation) of \(hostname) does not boot (injected fault: kernel panic); \(then)")
            if resets {
                spawn { node in
                    try await node.speed.sleep(node.timings.rebootDowntime, on: node.clock)
                    node.reset()
                }
            }
            return
        case .up(let bootID, let kernel, let agent):
            if agent {
                logger.info("[simulation] \(hostname) booted kernel \(kernel), boot id \(bootID)")
                emit(.booted(bootID: bootID, kernel: kernel))
            } else {
                logger.warning(
                    "[simulation] \(hostname) booted kernel \(kernel), boot id \(bootID), but its agent does not start (injected fault)")
                emit(.bootedWithoutAgent(bootID: bootID))
            }
            spawn { node in
                try await node.speed.sleep(node.timings.kubeletReadyAfterBoot, on: node.clock)
                let ready: Bool = node.state.withLock { s in
                    guard s.bootID == bootID, s.power == .up, !s.faults.kubeletNeverReady else { return false }
                    s.kubeletReady = true
                    return true
                }
                if ready {
                    node.logger.info("[simulation] kubelet is Ready on \(node.hostname)")
                    node.emit(.kubelet(ready: true))
                } else if node.state.withLock({ $0.faults.kubeletNeverReady }) {
                    node.logger.warning("[simulation] kubelet on \(node.hostname) never turns Ready (injected fault)")
                }
            }
        }
    }
}
