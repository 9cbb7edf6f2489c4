import Foundation

/// The POSIX sh scripts bootstrap runs on a node (through `ssh … sh -s`), and the parsing of their answers.
/// Pure text in, text out: tested without a network.
///
/// Every remote path is `root + path`. On a real node `root` is "" (the machine's /); tests point it at a
/// temporary directory so that a real sshd on 127.0.0.1 touches nothing else.
public struct RemoteScripts: Sendable, Hashable {
    /// Prefix of every remote path ("" on real nodes).
    public var root: String
    /// Where the agent's TLS files go (the paths the generated nk3-agent.nix names).
    public static let tlsDirectory = "/var/lib/nk3-agent/tls"
    /// The agent's state directory (0700).
    public static let stateDirectory = "/var/lib/nk3-agent"
    /// Where NixOS reads its configuration.
    public static let configDirectory = "/etc/nixos"
    /// Backups of the files bootstrap replaced, one directory per run.
    public static let backupDirectory = "/var/lib/nk3-agent/bootstrap-backup"
    /// The file NixOS creates on every installed system (stage-2 and the installer create /etc/NIXOS).
    public static let nixosMarker = "/etc/NIXOS"
    /// The system profile (docs/UPSTREAM.md#generations).
    public static let systemProfile = "/nix/var/nix/profiles/system"

    /// Makes scripts for a remote root ("" or "/" for the machine's own root).
    public init(root: String = "") {
        var r = root
        while r.hasSuffix("/") { r.removeLast() }
        self.root = r
    }

    /// Quotes `s` for POSIX sh: single quotes, with embedded single quotes as '\''.
    public static func quote(_ s: String) -> String {
        "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    /// File names bootstrap accepts: a plain name, no directories, no hidden files.
    public static func isSafeFileName(_ name: String) -> Bool {
        guard !name.isEmpty, name.count <= 200, !name.hasPrefix("."), !name.hasPrefix("-") else { return false }
        return name.unicodeScalars.allSatisfy {
            ($0.isASCII && (CharacterSet.alphanumerics.contains($0))) || $0 == "." || $0 == "-" || $0 == "_"
        }
    }

    private var header: String {
        """
        set -eu
        umask 077
        ROOT=\(Self.quote(root))

        """
    }

    // MARK: preflight (reads only)

    /// Reads what bootstrap must know and changes nothing: uid, NixOS or not, hardware-configuration.nix,
    /// nixos-rebuild on PATH, the system profile, and SHA-256 of the TLS and configuration files present.
    public func preflight(configNames: [String]) -> String {
        header + """
            echo "uid=$(id -u)"
            if [ -e "$ROOT\(Self.nixosMarker)" ]; then echo nixos=yes; else echo nixos=no; fi
            if [ -f "$ROOT\(Self.configDirectory)/hardware-configuration.nix" ]; then echo hardware=yes; else echo hardware=no; fi
            if command -v nixos-rebuild >/dev/null 2>&1; then echo rebuild=yes; else echo rebuild=no; fi
            echo "profile=$(readlink "$ROOT\(Self.systemProfile)" 2>/dev/null || true)"
            for f in agent.crt agent.key ca.crt; do
              p="$ROOT\(Self.tlsDirectory)/$f"
              if [ -f "$p" ]; then echo "tls.$f=$(sha256sum < "$p" | cut -d' ' -f1) $(stat -c %a "$p")"; fi
            done
            for f in \(configNames.map(Self.quote).joined(separator: " ")); do
              p="$ROOT\(Self.configDirectory)/$f"
              if [ -f "$p" ]; then echo "config.$f=$(sha256sum < "$p" | cut -d' ' -f1)"; fi
            done
            echo preflight=done

            """
    }

    // MARK: staging

    /// Creates the agent's state directory (0700) and a private staging directory inside it; prints its path.
    public func makeStaging() -> String {
        header + """
            mkdir -p "$ROOT\(Self.stateDirectory)"
            chmod 0700 "$ROOT\(Self.stateDirectory)"
            mktemp -d "$ROOT\(Self.stateDirectory)/.bootstrap.XXXXXX"

            """
    }

    /// Removes a staging directory (after a failure).
    public func removeStaging(_ staging: String) -> String {
        header + "rm -rf \(Self.quote(staging))\n"
    }

    // MARK: install

    /// Installs the staged files: TLS files into the TLS directory (0600, directory 0700), configuration files
    /// into /etc/nixos (0644) after backing up the ones they replace (names of files that did not exist go to
    /// `.absent`). Each file is renamed into place from a temporary name in its own directory, so a reader sees
    /// the old or the new file, never a partial one.
    public func install(staging: String, tlsNames: [String], configNames: [String], backupStamp: String) -> String {
        let tls = tlsNames.map(Self.quote).joined(separator: " ")
        let cfg = configNames.map(Self.quote).joined(separator: " ")
        return header + """
            STAGE=\(Self.quote(staging))
            TLS="$ROOT\(Self.tlsDirectory)"
            CFG="$ROOT\(Self.configDirectory)"
            BACKUP="$ROOT\(Self.backupDirectory)/\(backupStamp)"
            mkdir -p "$TLS"
            chmod 0700 "$ROOT\(Self.stateDirectory)" "$TLS"
            for f in \(tls); do
              chmod 0600 "$STAGE/$f"
              mv -f "$STAGE/$f" "$TLS/.$f.nk3-new"
              mv -f "$TLS/.$f.nk3-new" "$TLS/$f"
            done
            mkdir -p "$BACKUP" "$CFG"
            : > "$BACKUP/.absent"
            for f in \(cfg); do
              if [ -e "$CFG/$f" ]; then cp -p "$CFG/$f" "$BACKUP/$f"; else echo "$f" >> "$BACKUP/.absent"; fi
            done
            for f in \(cfg); do
              cp "$STAGE/$f" "$CFG/.$f.nk3-new"
              chmod 0644 "$CFG/.$f.nk3-new"
              mv -f "$CFG/.$f.nk3-new" "$CFG/$f"
            done
            rm -rf "$STAGE"
            echo "backup=$BACKUP"

            """
    }

    /// Puts back the configuration files saved by `install` (and removes those that did not exist before).
    public func restore(configNames: [String], backupStamp: String) -> String {
        let cfg = configNames.map(Self.quote).joined(separator: " ")
        return header + """
            CFG="$ROOT\(Self.configDirectory)"
            BACKUP="$ROOT\(Self.backupDirectory)/\(backupStamp)"
            for f in \(cfg); do
              if [ -e "$BACKUP/$f" ]; then
                cp -p "$BACKUP/$f" "$CFG/.$f.nk3-old"
                mv -f "$CFG/.$f.nk3-old" "$CFG/$f"
              elif grep -qxF "$f" "$BACKUP/.absent" 2>/dev/null; then
                rm -f "$CFG/$f"
              fi
            done
            echo "profile=$(readlink "$ROOT\(Self.systemProfile)" 2>/dev/null || true)"
            echo restored=yes

            """
    }

    // MARK: rebuild

    /// Runs `nixos-rebuild switch` (activation runs in a transient systemd unit, so a lost ssh session does
    /// not kill it; docs/UPSTREAM.md#nixos-rebuild). Output of both streams is the rebuild's log.
    public func rebuildSwitch() -> String {
        header + """
            exec 2>&1
            nixos-rebuild switch

            """
    }

    // MARK: parsing

    /// Parses `key=value` lines (the first `=` splits; later lines win).
    public static func parseFacts(_ output: String) -> [String: String] {
        var facts: [String: String] = [:]
        for line in output.split(separator: "\n", omittingEmptySubsequences: true) {
            guard let eq = line.firstIndex(of: "=") else { continue }
            facts[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        return facts
    }
}

/// A TLS file found on a node.
public struct RemoteFileInfo: Sendable, Hashable {
    /// Hex SHA-256 of the content.
    public var sha256: String
    /// Octal permission bits as `stat -c %a` prints them (e.g. "600").
    public var mode: String
}

/// What the preflight script found on a node.
public struct RemoteFacts: Sendable, Hashable {
    /// Numeric uid of the ssh user on the node.
    public var uid: Int?
    /// /etc/NIXOS exists.
    public var isNixOS: Bool
    /// /etc/nixos/hardware-configuration.nix exists.
    public var hasHardwareConfiguration: Bool
    /// nixos-rebuild is on the remote PATH.
    public var hasNixosRebuild: Bool
    /// Target of /nix/var/nix/profiles/system (e.g. system-12-link), empty if none.
    public var systemProfile: String
    /// TLS file name → hash and mode.
    public var tlsFiles: [String: RemoteFileInfo]
    /// Configuration file name → hex SHA-256.
    public var configFiles: [String: String]

    /// Parses the preflight output; nil if it did not run to the end.
    public init?(preflightOutput: String) {
        let facts = RemoteScripts.parseFacts(preflightOutput)
        guard facts["preflight"] == "done" else { return nil }
        uid = facts["uid"].flatMap { Int($0) }
        isNixOS = facts["nixos"] == "yes"
        hasHardwareConfiguration = facts["hardware"] == "yes"
        hasNixosRebuild = facts["rebuild"] == "yes"
        systemProfile = facts["profile"] ?? ""
        var tls: [String: RemoteFileInfo] = [:]
        var cfg: [String: String] = [:]
        for (k, v) in facts {
            if k.hasPrefix("tls.") {
                let parts = v.split(separator: " ").map(String.init)
                tls[String(k.dropFirst(4))] = RemoteFileInfo(sha256: parts.first ?? "", mode: parts.dropFirst().first ?? "")
            } else if k.hasPrefix("config.") {
                cfg[String(k.dropFirst(7))] = v
            }
        }
        tlsFiles = tls
        configFiles = cfg
    }
}
