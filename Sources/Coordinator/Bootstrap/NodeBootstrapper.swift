import Foundation
import Logging
import NK3Protocol

/// Knobs for `NodeBootstrapper`.
public struct BootstrapSettings: Sendable {
    /// How to reach the nodes.
    public var ssh: SSHOptions
    /// Prefix of every remote path: "" on real nodes. Tests point it at a temporary directory.
    public var remoteRoot: String = ""
    /// Refuse a non-root ssh user (bootstrap must write /etc/nixos and run nixos-rebuild). Tests that run
    /// sshd as an unprivileged user turn this off.
    public var requireRoot: Bool = true
    /// Timeout of each short remote step (preflight, staging, copy, install, restore).
    public var stepTimeout: Duration = .seconds(120)
    /// Timeout of `nixos-rebuild switch` (a first build may download and compile a lot).
    public var rebuildTimeout: Duration = .seconds(3600)
    /// How long to wait for the agent to answer over mTLS after the rebuild.
    public var agentTimeout: Duration = .seconds(300)
    /// First pause between agent probes; doubles up to `maxAgentPollInterval`.
    public var agentPollInterval: Duration = .milliseconds(250)
    /// Longest pause between agent probes.
    public var maxAgentPollInterval: Duration = .seconds(5)
    /// A release nk3-agent binary to copy to the node (`PlacedFile.agentBinaryPath`, 0755), which the generated
    /// nk3-agent.nix wraps (nix/agent-binary.nix); nil copies none (a flake or package supplies the agent).
    public var agentBinary: String?

    /// Settings with the given ssh options and defaults for the rest.
    public init(ssh: SSHOptions = SSHOptions()) { self.ssh = ssh }
}

/// Enrols fresh NixOS machines over ssh: copies the agent's TLS files to /var/lib/nk3-agent/tls (0600),
/// lands the first rendered configuration next to the machine's own hardware-configuration.nix, runs
/// `nixos-rebuild switch`, and waits until the agent answers over mutual TLS.
///
/// Idempotent: if the agent already answers, nothing is touched; if the files on the node already equal
/// what would be shipped, they are not rewritten. A failed rebuild puts the previous /etc/nixos files back.
public struct NodeBootstrapper: Sendable {
    /// Files of the TLS directory, in install order.
    static let tlsNames = ["agent.crt", "agent.key", "ca.crt"]

    let settings: BootstrapSettings
    let materials: any BootstrapMaterialSource
    private let probe: any BootstrapAgentProbe
    private let logger: Logger
    private let report: @Sendable (String) -> Void
    private let scripts: RemoteScripts
    private var transport: SSHTransport

    /// Makes a bootstrapper. `report` receives one human-readable line per step.
    public init(
        settings: BootstrapSettings, materials: any BootstrapMaterialSource, probe: any BootstrapAgentProbe,
        logger: Logger, report: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.settings = settings
        self.materials = materials
        self.probe = probe
        self.logger = logger
        self.report = report
        self.scripts = RemoteScripts(root: settings.remoteRoot)
        self.transport = SSHTransport(options: settings.ssh)
    }

    /// Bootstraps one node. Throws a `BootstrapError` that says what failed and what to do.
    public func bootstrap(_ target: BootstrapTarget) async throws(BootstrapError) -> BootstrapOutcome {
        var log = logger
        log[metadataKey: "bootstrap.node"] = "\(target.name)"

        // 1. Already enrolled? Then do nothing at all.
        if case .answers(let summary) = await probe.probe(target) {
            report("\(target): nk3-agent answers over mTLS (\(summary)): already enrolled, nothing changed")
            return .alreadyEnrolled(agentSummary: summary)
        }

        // 2. Whose host key is trusted: a pinned key gets a one-entry known_hosts file for this run.
        var pinned = self
        let pin = try await pinnedKnownHosts(target)
        defer { pin?.remove() }
        pinned.transport.pinnedKnownHosts = pin.map { $0.path + "/known_hosts" }
        return try await pinned.enrol(target, log: log)
    }

    /// Steps 3–7 of `bootstrap`, with the host key policy settled.
    private func enrol(_ target: BootstrapTarget, log: Logger) async throws(BootstrapError) -> BootstrapOutcome {
        var target = target
        let node = target.name
        // 3. Look at the machine (reads only).
        let placed = try await placedContents(target)
        let facts = try await preflight(target, placed: placed.map(\.file))
        target.machineStateVersion = facts.stateVersion

        // 4. What to ship (rendered knowing the machine's system.stateVersion).
        let (tls, files) = try await gatherMaterials(target)
        let configNames = files.keys.sorted()
        if !facts.hasHardwareConfiguration && files["configuration.nix"]!.contains("hardware-configuration.nix") {
            throw BootstrapError(
                .missingHardwareConfiguration, node: node,
                "configuration.nix imports ./hardware-configuration.nix but the node has none in /etc/nixos; "
                    + "run `nixos-generate-config` on the node, then bootstrap again")
        }
        report(
            "\(target): reachable over ssh as \(settings.ssh.user); NixOS; hardware-configuration.nix kept; "
                + "system.stateVersion \(facts.stateVersion.map { "\"\($0)\"" } ?? "not found in /etc/nixos")")

        // 5. Land what differs.
        let tlsSame = tls.files.allSatisfy { name, content in
            facts.tlsFiles[name]?.sha256 == sha256Hex(content) && facts.tlsFiles[name]?.mode == "600"
        }
        let configSame = files.allSatisfy { facts.configFiles[$0.key] == sha256Hex($0.value) }
        let placedSame = placed.allSatisfy { p in
            facts.placedFiles[p.file.stagedName]?.sha256 == p.sha256 && facts.placedFiles[p.file.stagedName]?.mode == p.file.mode
        }
        var backupStamp: String?
        var backupDirectory: String?
        if tlsSame && configSame && placedSame {
            report("\(target): TLS files and configuration already in place; running nixos-rebuild switch again")
        } else {
            let stamp = Self.backupStamp()
            backupDirectory = try await land(target, tls: tls, files: files, placed: placed, stamp: stamp)
            backupStamp = stamp
            report(
                "\(target): TLS files installed in \(RemoteScripts.tlsDirectory) (0600)"
                    + placed.map { "; \($0.file.path) (\($0.file.mode))" }.joined() + "; landed "
                    + configNames.joined(separator: ", ") + " in /etc/nixos (previous files in \(backupDirectory!))")
        }

        // 6. Rebuild.
        report("\(target): nixos-rebuild switch …")
        log.info("running nixos-rebuild switch")
        let rebuild = try await run(scripts.rebuildSwitch(), on: target, timeout: settings.rebuildTimeout, step: "nixos-rebuild switch")
        if rebuild.exitCode != 0 || rebuild.timedOut {
            let detail = Self.tail(rebuild.stdout + rebuild.stderr, lines: 25)
            let what = rebuild.timedOut
                ? "did not finish within \(settings.rebuildTimeout)"
                : "exited with status \(rebuild.exitCode)"
            var message = "nixos-rebuild switch \(what) on the node.\n\(detail)\n"
            if let stamp = backupStamp {
                message += try await restore(target, configNames: configNames, stamp: stamp, profileBefore: facts.systemProfile)
            } else {
                message += "The files on the node were already the ones nk3 ships; nothing was restored."
            }
            throw BootstrapError(.rebuildFailed, node: node, message)
        }
        report("\(target): nixos-rebuild switch succeeded")

        // 7. Wait for the agent.
        let summary = try await waitForAgent(target)
        report("\(target): nk3-agent answers over mTLS (\(summary)): enrolled")
        return .enrolled(agentSummary: summary, backupDirectory: backupDirectory)
    }

    // MARK: steps

    /// For a node with a pinned host key (`BootstrapTarget.sshHostKey`): a private scratch directory holding
    /// `known_hosts` with that key only. A fingerprint pin asks the node for its keys with ssh-keyscan first and
    /// refuses (before anything is sent) when none matches. Nil when nothing is pinned.
    private func pinnedKnownHosts(_ target: BootstrapTarget) async throws(BootstrapError) -> LocalScratch? {
        guard let text = target.sshHostKey else { return nil }
        let pin = try SSHHostKeyPin(parsing: text, node: target.name)
        var offered: [(type: String, blob: String)] = []
        if case .fingerprint = pin {
            let scan: LocalProcessResult
            do {
                scan = try await LocalProcess.run(
                    settings.ssh.keyscanCommand,
                    ["-p", String(settings.ssh.port), "-T", String(settings.ssh.connectTimeoutSeconds), target.address],
                    stdinFile: nil, timeout: settings.stepTimeout)
            } catch {
                throw BootstrapError(.sshFailed, node: target.name, "cannot run ssh-keyscan: \(error)")
            }
            offered = SSHHostKeyPin.scannedKeys(scan.stdout)
        }
        guard let line = pin.knownHostsLine(alias: SSHOptions.hostKeyAlias, offered: offered) else {
            let seen = offered.compactMap { SSHHostKeyPin.fingerprint(ofBlob: $0.blob) }
            throw BootstrapError(
                .hostKey, node: target.name,
                "no host key of \(target.address) matches the inventory's ssh_host_key (\(text)); the node offered "
                    + (seen.isEmpty ? "none" : seen.joined(separator: ", "))
                    + ". Nothing was sent. Check the fingerprint on the node's console (ssh-keygen -lf "
                    + "/etc/ssh/ssh_host_ed25519_key.pub)")
        }
        do {
            let scratch = try LocalScratch()
            _ = try scratch.write("known_hosts", line + "\n", permissions: 0o600)
            return scratch
        } catch {
            throw BootstrapError(.local, node: target.name, "cannot write the pinned known_hosts file: \(error)")
        }
    }

    private func gatherMaterials(_ target: BootstrapTarget) async throws(BootstrapError) -> (
        AgentTLSMaterial, [String: String]
    ) {
        let node = target.name
        let tls: AgentTLSMaterial
        var files: [String: String]
        do {
            tls = try await materials.tlsMaterial(for: target)
            files = try await materials.configurationFiles(for: target)
        } catch let e as BootstrapError {
            throw e
        } catch {
            throw BootstrapError(.materials, node: node, "cannot prepare the node's files: \(error)")
        }
        for (name, pem) in tls.files where !pem.contains("-----BEGIN ") {
            throw BootstrapError(.materials, node: node, "the \(name) provided for the node is not PEM text")
        }
        if files.removeValue(forKey: "hardware-configuration.nix") != nil {
            logger.debug("dropped hardware-configuration.nix from the bundle: the machine's own is kept")
        }
        guard files["configuration.nix"] != nil else {
            throw BootstrapError(
                .invalidInput, node: node,
                "the rendered files have no configuration.nix (got: \(files.keys.sorted().joined(separator: ", ")))")
        }
        for name in files.keys {
            guard RemoteScripts.isSafeFileName(name), !Self.tlsNames.contains(name) else {
                throw BootstrapError(
                    .invalidInput, node: node,
                    "refusing to land a file named '\(name)' in /etc/nixos: only plain file names are allowed")
            }
        }
        return (tls, files)
    }

    private func preflight(_ target: BootstrapTarget, placed: [PlacedFile]) async throws(BootstrapError) -> RemoteFacts {
        let node = target.name
        let result = try await run(
            scripts.preflight(placed: placed), on: target, timeout: settings.stepTimeout, step: "preflight")
        guard result.exitCode == 0, let facts = RemoteFacts(preflightOutput: result.stdout) else {
            throw BootstrapError(
                .remoteCommandFailed, node: node,
                "the preflight script failed (exit \(result.exitCode)): \(Self.tail(result.stderr, lines: 5))")
        }
        if settings.requireRoot && facts.uid != 0 {
            throw BootstrapError(
                .notRoot, node: node,
                "ssh user '\(settings.ssh.user)' is uid \(facts.uid.map(String.init) ?? "?") on the node, not root: "
                    + "bootstrap writes /etc/nixos and runs nixos-rebuild; use --ssh-user root")
        }
        guard facts.isNixOS else {
            throw BootstrapError(
                .notNixOS, node: node,
                "\(target.address) is not NixOS (no \(RemoteScripts.nixosMarker)); install NixOS with ssh enabled first")
        }
        guard facts.hasNixosRebuild else {
            throw BootstrapError(.notNixOS, node: node, "nixos-rebuild is not on root's PATH on \(target.address)")
        }
        return facts
    }

    /// Stages, copies and installs; returns the remote backup directory.
    private func land(
        _ target: BootstrapTarget, tls: AgentTLSMaterial, files: [String: String], placed: [PlacedContent], stamp: String
    ) async throws(BootstrapError) -> String {
        let node = target.name
        let made = try await run(scripts.makeStaging(), on: target, timeout: settings.stepTimeout, step: "staging")
        let staging = made.stdout.split(separator: "\n").last.map(String.init) ?? ""
        let expectedPrefix = scripts.root + RemoteScripts.stateDirectory + "/.bootstrap."
        guard made.exitCode == 0, staging.hasPrefix(expectedPrefix) else {
            throw BootstrapError(
                .remoteCommandFailed, node: node,
                "cannot create a staging directory on the node (exit \(made.exitCode)): \(Self.tail(made.stderr, lines: 5))")
        }

        let local: LocalScratch
        var paths: [String] = []
        do {
            local = try LocalScratch()
            for (name, content) in tls.files.sorted(by: { $0.key < $1.key }) {
                paths.append(try local.write(name, content, permissions: 0o600))
            }
            for (name, content) in files.sorted(by: { $0.key < $1.key }) {
                paths.append(try local.write(name, content, permissions: 0o600))
            }
            for p in placed { paths.append(try p.stage(in: local)) }
        } catch {
            _ = try? await run(scripts.removeStaging(staging), on: target, timeout: settings.stepTimeout, step: "cleanup")
            throw BootstrapError(.local, node: node, "cannot stage files locally: \(error)")
        }
        defer { local.remove() }

        let copied: LocalProcessResult
        do {
            copied = try await transport.copy(paths, to: staging, on: target.address, timeout: settings.stepTimeout)
        } catch {
            throw BootstrapError(.sshFailed, node: node, "cannot run scp: \(error)")
        }
        guard copied.exitCode == 0, !copied.timedOut else {
            _ = try? await run(scripts.removeStaging(staging), on: target, timeout: settings.stepTimeout, step: "cleanup")
            throw BootstrapError(
                .sshFailed, node: node,
                "scp to \(target.address) failed (exit \(copied.exitCode)): \(Self.tail(copied.stderr, lines: 5))")
        }

        let installed = try await run(
            scripts.install(
                staging: staging, tlsNames: Self.tlsNames, configNames: files.keys.sorted(), placed: placed.map(\.file),
                backupStamp: stamp),
            on: target, timeout: settings.stepTimeout, step: "install")
        guard installed.exitCode == 0, let backup = RemoteScripts.parseFacts(installed.stdout)["backup"] else {
            _ = try? await run(scripts.removeStaging(staging), on: target, timeout: settings.stepTimeout, step: "cleanup")
            throw BootstrapError(
                .remoteCommandFailed, node: node,
                "installing the files failed (exit \(installed.exitCode)): \(Self.tail(installed.stderr, lines: 5))")
        }
        return backup
    }

    /// Puts the previous /etc/nixos files back after a failed rebuild; returns the text to add to the error.
    private func restore(_ target: BootstrapTarget, configNames: [String], stamp: String, profileBefore: String)
        async throws(BootstrapError) -> String
    {
        let result: LocalProcessResult
        do {
            result = try await transport.runScript(
                scripts.restore(configNames: configNames, backupStamp: stamp), on: target.address,
                timeout: settings.stepTimeout)
        } catch {
            return "Restoring the previous /etc/nixos files could not start: \(error). They are in "
                + "\(RemoteScripts.backupDirectory)/\(stamp) on the node."
        }
        let facts = RemoteScripts.parseFacts(result.stdout)
        guard result.exitCode == 0, facts["restored"] == "yes" else {
            return "Restoring the previous /etc/nixos files FAILED (exit \(result.exitCode)); they are in "
                + "\(RemoteScripts.backupDirectory)/\(stamp) on the node."
        }
        var text = "The previous /etc/nixos files were put back."
        // A failed switch can still have moved the system profile: it is set before activation
        // (docs/UPSTREAM.md#nixos-rebuild).
        if let after = facts["profile"], after != profileBefore {
            text += " The system profile moved from \(profileBefore.isEmpty ? "(none)" : profileBefore) to \(after)"
                + " (activation failed after the profile was set): run `nixos-rebuild switch --rollback` on the node."
        } else {
            text += " The system profile did not move."
        }
        return text
    }

    private func waitForAgent(_ target: BootstrapTarget) async throws(BootstrapError) -> String {
        let clock = ContinuousClock()
        let deadline = clock.now + settings.agentTimeout
        var pause = settings.agentPollInterval
        var last = "no attempt"
        while true {
            switch await probe.probe(target) {
            case .answers(let summary): return summary
            case .noAnswer(let why): last = why
            }
            if clock.now >= deadline { break }
            do {
                try await Task.sleep(for: min(pause, deadline - clock.now))
            } catch {
                throw BootstrapError(.agentTimeout, node: target.name, "cancelled while waiting for the agent")
            }
            pause = min(pause * 2, settings.maxAgentPollInterval)
        }
        throw BootstrapError(
            .agentTimeout, node: target.name,
            "nixos-rebuild switch succeeded but nk3-agent did not answer over mTLS at \(target.address):\(target.agentPort) "
                + "within \(settings.agentTimeout) (last: \(last)). On the node check `journalctl -u nk3-agent`, that "
                + "services.nk3-agent.openFirewall is on, and that the agent certificate names \(target.address).")
    }

    // MARK: helpers

    private func run(_ script: String, on target: BootstrapTarget, timeout: Duration, step: String)
        async throws(BootstrapError) -> LocalProcessResult
    {
        let result: LocalProcessResult
        do {
            result = try await transport.runScript(script, on: target.address, timeout: timeout)
        } catch let e as BootstrapError {
            throw BootstrapError(e.code, node: target.name, e.message)
        } catch {
            throw BootstrapError(.sshFailed, node: target.name, "cannot run ssh: \(error)")
        }
        // 255 is ssh's own failure (connect, authenticate, host key); the remote scripts never exit 255.
        if result.exitCode == 255 && result.stderr.contains("Host key verification failed") {
            throw BootstrapError(
                .hostKey, node: target.name,
                "the ssh host key of \(target.address) is not known or does not match (ssh: "
                    + Self.tail(result.stderr, lines: 3) + "); nothing was sent. Add the node's key to --known-hosts, "
                    + "pin it in the inventory (hostvar ssh_host_key: the public key or its SHA256 fingerprint), or, "
                    + "on a network you trust, pass --trust-first-use")
        }
        if result.exitCode == 255 && step != "nixos-rebuild switch" {
            throw BootstrapError(
                .sshFailed, node: target.name,
                "ssh \(settings.ssh.user)@\(target.address) -p \(settings.ssh.port) failed during \(step): "
                    + Self.tail(result.stderr, lines: 5)
                    + " (check the address, --ssh-key, --ssh-port and --known-hosts; a changed host key is refused)")
        }
        return result
    }

    static func backupStamp(now: Date = Date()) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return f.string(from: now) + "-\(getpid())"
    }

    static func tail(_ text: String, lines: Int) -> String {
        let all = text.split(separator: "\n", omittingEmptySubsequences: false)
        let trimmed = all.last == "" ? all.dropLast() : all[...]
        return trimmed.suffix(lines).joined(separator: "\n")
    }
}

/// Hex SHA-256 of a string's UTF-8 bytes (the same digest `sha256sum` prints on the node).
func sha256Hex(_ s: String) -> String { ConfigFiles.hash(content: s) }
