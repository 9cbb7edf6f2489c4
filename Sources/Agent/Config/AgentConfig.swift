#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NK3Common
import NK3Protocol

/// The agent's configuration file (JSON), as the NixOS module renders it from `services.nk3-agent.settings`
/// with `pkgs.formats.json` (nixpkgs pkgs/pkgs-lib/formats.nix). Only `nodeName`, `tls` and `signingPublicKeys` are
/// required; every other key has the default shown. Unknown keys are an error (a typo must not silently fall back to a
/// default).
public struct AgentConfig: Codable, Sendable, Hashable {
    /// TLS files of the agent.
    public struct TLS: Codable, Sendable, Hashable {
        public var certFile: String
        /// Private key; must be 0600.
        public var keyFile: String
        /// Cluster CA that client certificates must chain to.
        public var caFile: String

        public init(certFile: String, keyFile: String, caFile: String) {
            self.certFile = certFile
            self.keyFile = keyFile
            self.caFile = caFile
        }
    }

    /// Programs the agent runs (names looked up in PATH, or absolute paths).
    public struct Commands: Codable, Sendable, Hashable {
        public var nixosRebuild = "nixos-rebuild"
        public var nixChannel = "nix-channel"
        public var nixEnv = "nix-env"
        public var systemctl = "systemctl"
        /// Trial boot with GRUB. nk3 addition.
        public var grubReboot = "grub-reboot"
        public var grubEditenv = "grub-editenv"
        /// Trial boot with systemd-boot. nk3 addition.
        public var bootctl = "bootctl"
        public init() {}
    }

    /// Machine paths the agent reads and links it follows.
    public struct Paths: Codable, Sendable, Hashable {
        public var currentSystem = "/run/current-system"
        public var bootedSystem = "/run/booted-system"
        public var systemProfile = "/nix/var/nix/profiles/system"
        public var channelsFile = "/root/.nix-channels"
        /// Channel profile (`nix-channel --rollback` moves it; docs/UPSTREAM.md#channels). nk3 addition.
        public var channelsProfile = "/nix/var/nix/profiles/per-user/root/channels"
        public var osrelease = "/proc/sys/kernel/osrelease"
        public var bootID = "/proc/sys/kernel/random/boot_id"
        public var uptime = "/proc/uptime"
        /// Hostname source. nk3 addition.
        public var hostname = "/proc/sys/kernel/hostname"
        /// GRUB's environment block (a pending one-shot is cleared there). nk3 addition.
        public var grubEnv = "/boot/grub/grubenv"
        public init() {}
    }

    public var nodeName: String
    public var listenAddress = "0.0.0.0"
    public var port = 7443
    public var tls: TLS
    /// Pinned Ed25519 public keys, base64 of 32 raw bytes each.
    public var signingPublicKeys: [String]
    public var stateDir = "/var/lib/nk3-agent"
    public var configDir = "/etc/nixos"
    public var k3sUnit = "k3s"
    public var kubeletHealthzURL = "http://127.0.0.1:10248/healthz"
    /// Default confirm timeout (a bundle carries its own; this is reported and used by tooling).
    public var confirmTimeoutSeconds = 600
    /// Client certificates refused although the CA signed them (`serial:HEX` / `sha256:HEX`; `nk3 certs revoke`).
    public var revokedCertificates: [String] = []
    public var commands = Commands()
    public var paths = Paths()
    /// Boot loader one-shot for trial boots: "grub", "systemd-boot", or "off" (dead-man rollback only; the
    /// module sets it from `services.nk3-agent.trialBoot` and the enabled loader).
    public var trialBoot = "off"

    /// A configuration with defaults for everything optional.
    public init(nodeName: String, tls: TLS, signingPublicKeys: [String]) {
        self.nodeName = nodeName
        self.tls = tls
        self.signingPublicKeys = signingPublicKeys
    }

    /// Loads and validates a configuration file.
    public static func load(path: String) throws(AgentConfigError) -> AgentConfig {
        let data: Data
        do {
            data = try SecureFiles.read(path)
        } catch {
            throw AgentConfigError(path: path, "cannot read the config file: \(error.message)")
        }
        return try parse(data, path: path)
    }

    /// Parses and validates configuration JSON (`path` only names it in errors).
    public static func parse(_ data: Data, path: String = "<config>") throws(AgentConfigError) -> AgentConfig {
        let config: AgentConfig
        do {
            config = try JSONDecoder().decode(AgentConfig.self, from: data)
        } catch let e as AgentConfigError {
            throw AgentConfigError(path: path, e.message)
        } catch {
            throw AgentConfigError(path: path, StrictJSON.describe(error))
        }
        if let problem = config.validationProblem() { throw AgentConfigError(path: path, problem) }
        return config
    }

    /// The first problem with the values, if any.
    public func validationProblem() -> String? {
        if nodeName.isEmpty { return "nodeName is empty" }
        if signingPublicKeys.isEmpty { return "signingPublicKeys is empty: pin at least one key (contents of signing.pub)" }
        for (i, k) in signingPublicKeys.enumerated() {
            guard let d = Data(base64Encoded: k.trimmingWhitespaceAndNewlines()), d.count == 32 else {
                return "signingPublicKeys[\(i)] is not base64 of 32 raw bytes"
            }
        }
        do throws(WireError) {
            _ = try RevocationList(revokedCertificates)
        } catch {
            return "revokedCertificates: \(error.message)"
        }
        if !AgentLimits.port.contains(port) {
            return "port \(port) is out of range \(AgentLimits.port.lowerBound)…\(AgentLimits.port.upperBound)"
        }
        if !AgentLimits.confirmTimeoutSeconds.contains(confirmTimeoutSeconds) {
            let r = AgentLimits.confirmTimeoutSeconds
            return "confirmTimeoutSeconds \(confirmTimeoutSeconds) is out of range \(r.lowerBound)…\(r.upperBound)"
        }
        if trialBoot != "off" && TrialBootLoader(rawValue: trialBoot) == nil {
            return "trialBoot '\(trialBoot)' is not one of grub, systemd-boot, off"
        }
        for (key, p) in [("stateDir", stateDir), ("configDir", configDir)] where !p.hasPrefix("/") {
            return "\(key) must be an absolute path, got '\(p)'"
        }
        return nil
    }

    /// Options for the real backend from this configuration (`root` prefixes machine paths in tests).
    public func nixOSOptions(root: String = "") -> NixOSSystem.Options {
        var o = NixOSSystem.Options()
        o.root = root
        o.configDir = configDir
        o.managedFilesRecord = "\(stateDir)/managed-files.json"
        o.nixosRebuild = commands.nixosRebuild
        o.nixChannel = commands.nixChannel
        o.nixEnv = commands.nixEnv
        o.systemctl = commands.systemctl
        o.currentSystem = paths.currentSystem
        o.bootedSystem = paths.bootedSystem
        o.systemProfile = paths.systemProfile
        o.channelsFile = paths.channelsFile
        o.channelsProfile = paths.channelsProfile
        o.osrelease = paths.osrelease
        o.bootID = paths.bootID
        o.uptime = paths.uptime
        o.hostname = paths.hostname
        o.kubeletHealthzURL = kubeletHealthzURL
        o.trialBoot = TrialBootLoader(rawValue: trialBoot)
        o.grubReboot = commands.grubReboot
        o.grubEditenv = commands.grubEditenv
        o.bootctl = commands.bootctl
        o.grubEnv = paths.grubEnv
        return o
    }
}

/// The agent configuration file is unusable: which file and what to fix.
public struct AgentConfigError: Error, Sendable, Hashable, CustomStringConvertible {
    public var path: String
    public var message: String

    public init(path: String, _ message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { "agent config \(path): \(message)" }
}

// MARK: strict decoding with defaults

private struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

private func rejectUnknownKeys(_ decoder: Decoder, known: [String], in section: String) throws {
    let c = try decoder.container(keyedBy: AnyKey.self)
    let unknown = c.allKeys.map(\.stringValue).filter { !known.contains($0) }.sorted()
    if let first = unknown.first {
        throw AgentConfigError(
            path: "", "unknown key '\(section.isEmpty ? "" : section + ".")\(first)'; known keys: \(known.joined(separator: ", "))")
    }
}

extension AgentConfig {
    private enum CodingKeys: String, CodingKey, CaseIterable {
        case nodeName, listenAddress, port, tls, signingPublicKeys, stateDir, configDir, k3sUnit, kubeletHealthzURL,
            confirmTimeoutSeconds, revokedCertificates, commands, paths, trialBoot
    }

    /// Strict decoding: unknown keys are errors; absent optional keys take their defaults.
    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue), in: "")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        nodeName = try c.decode(String.self, forKey: .nodeName)
        tls = try c.decode(TLS.self, forKey: .tls)
        signingPublicKeys = try c.decode([String].self, forKey: .signingPublicKeys)
        listenAddress = try c.decodeIfPresent(String.self, forKey: .listenAddress) ?? listenAddress
        port = try c.decodeIfPresent(Int.self, forKey: .port) ?? port
        stateDir = try c.decodeIfPresent(String.self, forKey: .stateDir) ?? stateDir
        configDir = try c.decodeIfPresent(String.self, forKey: .configDir) ?? configDir
        k3sUnit = try c.decodeIfPresent(String.self, forKey: .k3sUnit) ?? k3sUnit
        kubeletHealthzURL = try c.decodeIfPresent(String.self, forKey: .kubeletHealthzURL) ?? kubeletHealthzURL
        confirmTimeoutSeconds = try c.decodeIfPresent(Int.self, forKey: .confirmTimeoutSeconds) ?? confirmTimeoutSeconds
        revokedCertificates = try c.decodeIfPresent([String].self, forKey: .revokedCertificates) ?? revokedCertificates
        commands = try c.decodeIfPresent(Commands.self, forKey: .commands) ?? commands
        paths = try c.decodeIfPresent(Paths.self, forKey: .paths) ?? paths
        trialBoot = try c.decodeIfPresent(String.self, forKey: .trialBoot) ?? trialBoot
    }
}

extension AgentConfig.TLS {
    private enum CodingKeys: String, CodingKey, CaseIterable { case certFile, keyFile, caFile }

    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue), in: "tls")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        certFile = try c.decode(String.self, forKey: .certFile)
        keyFile = try c.decode(String.self, forKey: .keyFile)
        caFile = try c.decode(String.self, forKey: .caFile)
    }
}

extension AgentConfig.Commands {
    private enum CodingKeys: String, CodingKey, CaseIterable { case nixosRebuild, nixChannel, nixEnv, systemctl, grubReboot, grubEditenv, bootctl }

    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue), in: "commands")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        nixosRebuild = try c.decodeIfPresent(String.self, forKey: .nixosRebuild) ?? nixosRebuild
        nixChannel = try c.decodeIfPresent(String.self, forKey: .nixChannel) ?? nixChannel
        nixEnv = try c.decodeIfPresent(String.self, forKey: .nixEnv) ?? nixEnv
        systemctl = try c.decodeIfPresent(String.self, forKey: .systemctl) ?? systemctl
        grubReboot = try c.decodeIfPresent(String.self, forKey: .grubReboot) ?? grubReboot
        grubEditenv = try c.decodeIfPresent(String.self, forKey: .grubEditenv) ?? grubEditenv
        bootctl = try c.decodeIfPresent(String.self, forKey: .bootctl) ?? bootctl
    }
}

extension AgentConfig.Paths {
    private enum CodingKeys: String, CodingKey, CaseIterable {
        case currentSystem, bootedSystem, systemProfile, channelsFile, channelsProfile, osrelease, bootID, uptime,
            hostname, grubEnv
    }

    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue), in: "paths")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        currentSystem = try c.decodeIfPresent(String.self, forKey: .currentSystem) ?? currentSystem
        bootedSystem = try c.decodeIfPresent(String.self, forKey: .bootedSystem) ?? bootedSystem
        systemProfile = try c.decodeIfPresent(String.self, forKey: .systemProfile) ?? systemProfile
        channelsFile = try c.decodeIfPresent(String.self, forKey: .channelsFile) ?? channelsFile
        channelsProfile = try c.decodeIfPresent(String.self, forKey: .channelsProfile) ?? channelsProfile
        osrelease = try c.decodeIfPresent(String.self, forKey: .osrelease) ?? osrelease
        bootID = try c.decodeIfPresent(String.self, forKey: .bootID) ?? bootID
        uptime = try c.decodeIfPresent(String.self, forKey: .uptime) ?? uptime
        hostname = try c.decodeIfPresent(String.self, forKey: .hostname) ?? hostname
        grubEnv = try c.decodeIfPresent(String.self, forKey: .grubEnv) ?? grubEnv
    }
}
