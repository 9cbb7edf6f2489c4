import Foundation
import NK3Common

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
    /// The agent's record of the files nk3 manages in /etc/nixos (a JSON array of names, read by the agent's
    /// NixOS backend: the files it reports and diffs, and those a later bundle may drop).
    public static let managedFilesRecord = "/var/lib/nk3-agent/managed-files.json"
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
    /// nixos-rebuild on PATH, the system profile, SHA-256 of the TLS files, of every file in /etc/nixos and of
    /// the `placed` files, and the `system.stateVersion` the machine's configuration sets (the first
    /// uncommented `system.stateVersion = "NN.NN"` in a .nix file under /etc/nixos; the NixOS installer writes
    /// it into configuration.nix, nixpkgs nixos/modules/installer/tools/tools.nix).
    public func preflight(placed: [PlacedFile] = []) -> String {
        let placedLines = placed.map { f in
            """
            p="$ROOT\(f.path)"
            if [ -f "$p" ]; then echo "placed.\(f.stagedName)=$(sha256sum < "$p" | cut -d' ' -f1) $(stat -c %a "$p")"; fi

            """
        }.joined()
        return header + placedLines + """
            echo "uid=$(id -u)"
            if [ -e "$ROOT\(Self.nixosMarker)" ]; then echo nixos=yes; else echo nixos=no; fi
            if [ -f "$ROOT\(Self.configDirectory)/hardware-configuration.nix" ]; then echo hardware=yes; else echo hardware=no; fi
            if command -v nixos-rebuild >/dev/null 2>&1; then echo rebuild=yes; else echo rebuild=no; fi
            echo "profile=$(readlink "$ROOT\(Self.systemProfile)" 2>/dev/null || true)"
            for f in agent.crt agent.key ca.crt; do
              p="$ROOT\(Self.tlsDirectory)/$f"
              if [ -f "$p" ]; then echo "tls.$f=$(sha256sum < "$p" | cut -d' ' -f1) $(stat -c %a "$p")"; fi
            done
            for p in "$ROOT\(Self.configDirectory)"/*; do
              if [ -f "$p" ]; then echo "config.$(basename "$p")=$(sha256sum < "$p" | cut -d' ' -f1)"; fi
            done
            sv=$(grep -rhE --include='*.nix' 'system[.]stateVersion *= *"[0-9][0-9][.][0-9][0-9]"' "$ROOT\(Self.configDirectory)" 2>/dev/null \\
              | sed -nE 's/^[^#]*system[.]stateVersion *= *"([0-9][0-9][.][0-9][0-9])".*/\\1/p' | head -n 1 || true)
            echo "stateversion=$sv"
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
    /// the old or the new file, never a partial one. Then records the landed names in the agent's managed-file
    /// record (merged with any record already there; the previous record is backed up too), so that the
    /// agent's first apply knows which files are nk3's.
    public func install(
        staging: String, tlsNames: [String], configNames: [String], placed: [PlacedFile] = [], backupStamp: String
    ) -> String {
        let tls = tlsNames.map(Self.quote).joined(separator: " ")
        let cfg = configNames.map(Self.quote).joined(separator: " ")
        let placedLines = placed.map { f in
            let dir = Self.quote(PathName.deletingLastComponent(f.path))
            let name = Self.quote(PathName.lastComponent(f.path))
            return """
                mkdir -p "$ROOT"\(dir)
                chmod \(f.directoryMode) "$ROOT"\(dir)
                cp "$STAGE/\(f.stagedName)" "$ROOT"\(dir)/.\(name).nk3-new
                chmod \(f.mode) "$ROOT"\(dir)/.\(name).nk3-new
                mv -f "$ROOT"\(dir)/.\(name).nk3-new "$ROOT"\(dir)/\(name)

                """
        }.joined()
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
            \(placedLines)
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
            RECORD="$ROOT\(Self.managedFilesRecord)"
            if [ -e "$RECORD" ]; then cp -p "$RECORD" "$BACKUP/.managed-files.json"; fi
            # Names are plain ([A-Za-z0-9._-]): the JSON array's names are its quoted words.
            { if [ -f "$RECORD" ]; then tr -c 'A-Za-z0-9._-' '\\n' < "$RECORD"; fi
              for f in \(cfg); do echo "$f"; done; } | grep -v '^$' | LC_ALL=C sort -u > "$STAGE.names"
            { printf '['; sep=''; while read -r n; do printf '%s"%s"' "$sep" "$n"; sep=','; done < "$STAGE.names"; printf ']'; } \\
              > "$RECORD.nk3-new"
            chmod 0600 "$RECORD.nk3-new"
            mv -f "$RECORD.nk3-new" "$RECORD"
            rm -f "$STAGE.names"
            rm -rf "$STAGE"
            echo "backup=$BACKUP"

            """
    }

    /// Puts back the configuration files saved by `install` (and removes those that did not exist before), and
    /// the managed-file record as it was.
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
            RECORD="$ROOT\(Self.managedFilesRecord)"
            if [ -e "$BACKUP/.managed-files.json" ]; then
              cp -p "$BACKUP/.managed-files.json" "$RECORD.nk3-old"
              mv -f "$RECORD.nk3-old" "$RECORD"
            else
              rm -f "$RECORD"
            fi
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

/// A file bootstrap places outside /etc/nixos, copied like the TLS files: the agent binary, the k3s token.
public struct PlacedFile: Sendable, Hashable {
    /// Its name in the staging directory (a plain name).
    public var stagedName: String
    /// Absolute path on the node (under the remote root).
    public var path: String
    /// Octal permission bits of the file, as chmod takes them ("600").
    public var mode: String
    /// Octal permission bits of its directory.
    public var directoryMode: String

    /// Makes one.
    public init(stagedName: String, path: String, mode: String, directoryMode: String) {
        self.stagedName = stagedName
        self.path = path
        self.mode = mode
        self.directoryMode = directoryMode
    }

    /// Where `nk3 bootstrap` puts the agent binary; the generated nk3-agent.nix wraps it
    /// (nix/agent-binary.nix patches its interpreter and rpath to the node's glibc).
    public static let agentBinaryPath = "/var/lib/nk3-agent/bin/nk3-agent"
    /// Where `nk3 bootstrap` puts the k3s join token (root only); the default template gives it to k3s as
    /// `services.k3s.tokenFile`, so the token is neither in the Nix store nor in a bundle.
    public static let k3sTokenPath = "/etc/nk3/k3s-token"

    /// The agent binary: 0755 in a 0755 directory inside the 0700 state directory.
    public static let agentBinary = PlacedFile(
        stagedName: "nk3-agent", path: agentBinaryPath, mode: "755", directoryMode: "755")
    /// The k3s token: 0600 in a 0755 /etc/nk3.
    public static let k3sToken = PlacedFile(stagedName: "k3s-token", path: k3sTokenPath, mode: "600", directoryMode: "755")
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
    /// Configuration file name → hex SHA-256 (every regular file in /etc/nixos).
    public var configFiles: [String: String]
    /// Placed file (staged name) → hash and mode.
    public var placedFiles: [String: RemoteFileInfo]
    /// The `system.stateVersion` found in the machine's configuration, if any.
    public var stateVersion: String?

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
        var placed: [String: RemoteFileInfo] = [:]
        func info(_ v: String) -> RemoteFileInfo {
            let parts = v.split(separator: " ").map(String.init)
            return RemoteFileInfo(sha256: parts.first ?? "", mode: parts.dropFirst().first ?? "")
        }
        for (k, v) in facts {
            if k.hasPrefix("tls.") {
                tls[String(k.dropFirst(4))] = info(v)
            } else if k.hasPrefix("config.") {
                cfg[String(k.dropFirst(7))] = v
            } else if k.hasPrefix("placed.") {
                placed[String(k.dropFirst(7))] = info(v)
            }
        }
        tlsFiles = tls
        configFiles = cfg
        placedFiles = placed
        stateVersion = facts["stateversion"].flatMap { $0.isEmpty ? nil : $0 }
    }
}
