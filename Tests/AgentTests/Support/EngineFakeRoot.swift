import Foundation
import NK3Common
import Logging
import NK3Agent
import NK3Protocol

#if canImport(Glibc)
import Glibc
#endif

/// A fake NixOS machine in a temp directory: generations as `system-N-link` symlinks to store dirs, a channel
/// profile, `/run/{current,booted}-system`, `/proc` files, and fake `nixos-rebuild`, `nix-channel`, `nix-env`,
/// `systemctl` and per-generation `switch-to-configuration` bash scripts that behave as
/// docs/UPSTREAM.md describes (profile set before activation; `--set` of the highest target makes no new
/// generation; a bogus channel fails only at `--update`; bash-style exit 1 after a failed activation, or
/// ng-style pass-through).
///
/// Knobs (files in `control/`): `hang-build`, `hang-activation` (sleep 600 at that point), `ng` (pass
/// switch-to-configuration's exit code through). A configuration.nix containing `EVAL_ERROR` fails evaluation;
/// `# kernel: X`, `# version: V`, `# activation-exit: N` lines shape the built system.
/// Records: `control/calls.log`, `control/reboots`, `control/bootdefault`, `control/rebuild.pid`.
///
/// Boot loader one-shots (trial boot): fake `grub-reboot ENTRY` writes `next_entry=ENTRY` into
/// `boot/grub/grubenv` and `grub-editenv FILE unset next_entry` removes it (GRUB's grub-reboot(8) and
/// grub-editenv(1)); fake `bootctl set-oneshot ID` records ID in `control/oneshot-efivar`, an empty ID removes it
/// (systemd bootctl(1)). Each records its argv (`$#` and every argument quoted) in calls.log.
/// `simulateReboot()` boots the one-shot entry once (GRUB: `1>K`, the K-th newest profile generation, as
/// nixpkgs install-grub.pl lists them; systemd-boot: `nixos-generation-N.conf`), else the default.
final class EngineFakeRoot: Sendable {
    let root: String
    let stateDir: String

    static let initialConfig = "{ ... }: {\n  # kernel: 6.6.1\n  # version: 24.05.1\n  networking.hostName = \"node1\";\n}\n"
    static let initialFiles = ["configuration.nix": initialConfig, "k3s.nix": "{ ... }: { services.k3s.enable = true; }\n"]
    static let initialChannel = "https://channels.nixos.org/nixos-24.05"

    /// - Parameters:
    ///   - recordManaged: record `files` as nk3-managed (as after a first apply); false: a fresh node.
    ///   - bootstrapLayout: add `bootstrapped`'s files (see there).
    init(files: [String: String] = EngineFakeRoot.initialFiles, recordManaged: Bool = true, bootstrapLayout: Bool = false)
        throws
    {
        let base = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("nk3-engine-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: base, withIntermediateDirectories: true)
        root = URL(fileURLWithPath: base.path).resolvingSymlinksInPath().path
        stateDir = root + "/var/lib/nk3-agent"
        for d in [
            "etc/nixos", "nix/store", "nix/var/nix/profiles/per-user/root", "run", "proc/sys/kernel/random", "root",
            "bin", "control", "var/lib/nk3-agent", "boot/grub",
        ] {
            try FileManager.default.createDirectory(atPath: "\(root)/\(d)", withIntermediateDirectories: true)
        }
        try write("proc/sys/kernel/hostname", "node1\n")
        try write("proc/sys/kernel/random/boot_id", UUID().uuidString.lowercased() + "\n")
        try write("proc/uptime", "1234.56 2000.00\n")
        try write("root/.nix-channels", "\(Self.initialChannel) nixos\n")
        try installScripts()
        for (name, content) in files { try write("etc/nixos/\(name)", content) }
        if bootstrapLayout { try writeBootstrapLayout() }
        if recordManaged {
            try JSONEncoder().encode(files.keys.sorted()).write(to: URL(fileURLWithPath: stateDir + "/managed-files.json"))
        }
        // First channel generation and first system generation, as an installed node has them.
        try sh("\(root)/bin/nix-channel --update nixos")
        try sh("\(root)/bin/nixos-rebuild switch")
        try sh("ln -sfn \"$(readlink -f \(root)/run/current-system)\" \(root)/run/booted-system")
        try write("proc/sys/kernel/osrelease", (kernel(ofSystem: try currentSystem()) ?? "6.6.1") + "\n")
        try sh(": > \(root)/control/calls.log")
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }

    // MARK: backend wiring

    /// Backend options with the root prefix (the in-process tests run NixOSSystem against this root).
    var options: NixOSSystem.Options {
        var o = NixOSSystem.Options()
        o.root = root
        o.managedFilesRecord = stateDir + "/managed-files.json"
        o.nixosRebuild = "\(root)/bin/nixos-rebuild"
        o.nixChannel = "\(root)/bin/nix-channel"
        o.nixEnv = "\(root)/bin/nix-env"
        o.systemctl = "\(root)/bin/systemctl"
        o.rebuildTimeout = .seconds(120)
        return o
    }

    func system(logger: Logger = Logger(label: "test"), trialBoot: TrialBootLoader? = nil) -> NixOSSystem {
        var o = options
        o.trialBoot = trialBoot
        o.grubReboot = "\(root)/bin/grub-reboot"
        o.grubEditenv = "\(root)/bin/grub-editenv"
        o.bootctl = "\(root)/bin/bootctl"
        return NixOSSystem(options: o, runner: ProcessRunner(terminationGrace: .seconds(2)), logger: logger)
    }

    /// GRUB's pending one-shot entry (`next_entry` in grubenv), if any.
    var grubNextEntry: String? {
        (read("boot/grub/grubenv") ?? "").split(separator: "\n").first { $0.hasPrefix("next_entry=") }
            .map { String($0.dropFirst("next_entry=".count)) }
    }
    /// systemd-boot's pending one-shot entry (`LoaderEntryOneShot`), if any.
    var systemdOneShot: String? { read("control/oneshot-efivar")?.trimmingCharacters(in: .whitespacesAndNewlines) }

    /// An agent config file for the `nk3-agent` binary with every path absolute inside this root.
    func agentConfig(
        signingKey: String, healthz: String = "http://127.0.0.1:1/healthz", trialBoot: TrialBootLoader? = nil
    ) -> AgentConfig {
        var c = AgentConfig(
            nodeName: "node1", tls: .init(certFile: "\(root)/unused.crt", keyFile: "\(root)/unused.key", caFile: "\(root)/unused-ca.crt"),
            signingPublicKeys: [signingKey])
        c.stateDir = stateDir
        c.configDir = "\(root)/etc/nixos"
        c.kubeletHealthzURL = healthz
        c.commands.nixosRebuild = "\(root)/bin/nixos-rebuild"
        c.commands.nixChannel = "\(root)/bin/nix-channel"
        c.commands.nixEnv = "\(root)/bin/nix-env"
        c.commands.systemctl = "\(root)/bin/systemctl"
        c.commands.grubReboot = "\(root)/bin/grub-reboot"
        c.commands.grubEditenv = "\(root)/bin/grub-editenv"
        c.commands.bootctl = "\(root)/bin/bootctl"
        c.paths.grubEnv = "\(root)/boot/grub/grubenv"
        c.trialBoot = trialBoot?.rawValue ?? "off"
        c.paths.currentSystem = "\(root)/run/current-system"
        c.paths.bootedSystem = "\(root)/run/booted-system"
        c.paths.systemProfile = "\(root)/nix/var/nix/profiles/system"
        c.paths.channelsFile = "\(root)/root/.nix-channels"
        c.paths.channelsProfile = "\(root)/nix/var/nix/profiles/per-user/root/channels"
        c.paths.osrelease = "\(root)/proc/sys/kernel/osrelease"
        c.paths.bootID = "\(root)/proc/sys/kernel/random/boot_id"
        c.paths.uptime = "\(root)/proc/uptime"
        c.paths.hostname = "\(root)/proc/sys/kernel/hostname"
        return c
    }

    // MARK: knobs and observations

    func write(_ rel: String, _ content: String) throws {
        try content.write(toFile: "\(root)/\(rel)", atomically: false, encoding: .utf8)
    }

    func read(_ rel: String) -> String? { try? String(contentsOfFile: "\(root)/\(rel)", encoding: .utf8) }

    func setKnob(_ name: String, _ on: Bool = true) throws {
        if on { try write("control/\(name)", "1\n") } else { unlink("\(root)/control/\(name)") }
    }

    /// All regular (non-hidden) files in /etc/nixos.
    func configFiles() -> [String: String] {
        var out: [String: String] = [:]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "\(root)/etc/nixos")) ?? [] where !name.hasPrefix(".") {
            out[name] = read("etc/nixos/\(name)")
        }
        return out
    }

    /// One entry of /etc/nixos as `lstat` sees it: a regular file's text and permission bits, or a link's target.
    enum Entry: Hashable, CustomStringConvertible {
        case file(String, mode: Int)
        case link(String)
        case other
        var description: String {
            switch self {
            case .file(let text, let mode): return "file(\(String(mode, radix: 8)), \(text.count) bytes)"
            case .link(let target): return "link(\(target))"
            case .other: return "other"
            }
        }
    }

    /// Every non-hidden entry of /etc/nixos, exact: contents, modes and link targets (not followed).
    func configEntries() -> [String: Entry] {
        var out: [String: Entry] = [:]
        let dir = "\(root)/etc/nixos"
        for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] where !name.hasPrefix(".") {
            var st = stat()
            guard lstat("\(dir)/\(name)", &st) == 0 else { continue }
            switch st.st_mode & S_IFMT {
            case S_IFREG: out[name] = .file(read("etc/nixos/\(name)") ?? "", mode: Int(st.st_mode & 0o7777))
            case S_IFLNK: out[name] = link("etc/nixos/\(name)").map(Entry.link) ?? .other
            default: out[name] = .other
            }
        }
        return out
    }

    /// A node as `nk3 bootstrap` leaves it, plus what the machine had of its own: bootstrap's three files, the
    /// machine's hardware-configuration.nix (0600 here, to see modes come back), and `configuration.nix` a
    /// symbolic link to `hosts/node1.nix` (a layout some installs use). `record`: whether the managed-file
    /// record exists (bootstrap now writes it; nodes enrolled before did not have one).
    static func bootstrapped(record: Bool) throws -> EngineFakeRoot {
        let fake = try EngineFakeRoot(files: [:], recordManaged: false, bootstrapLayout: true)
        if record {
            try JSONEncoder().encode(bootstrapNames).write(to: URL(fileURLWithPath: fake.stateDir + "/managed-files.json"))
        }
        return fake
    }

    static let bootstrapNames = ["configuration.nix", "nk3-agent-module.nix", "nk3-agent.nix"]
    static let hardwareConfig = "# generated by nixos-generate-config\n{ fileSystems.\"/\".device = \"/dev/vda1\"; }\n"

    /// Lays out `bootstrapped`'s files (before the first rebuild of the fake machine).
    private func writeBootstrapLayout() throws {
        try FileManager.default.createDirectory(atPath: "\(root)/etc/nixos/hosts", withIntermediateDirectories: true)
        try write("etc/nixos/hosts/node1.nix", Self.initialConfig)
        try sh("ln -s hosts/node1.nix \(root)/etc/nixos/configuration.nix")
        try write("etc/nixos/nk3-agent.nix", "{ imports = [ ./nk3-agent-module.nix ]; services.nk3-agent.enable = true; }\n")
        try write("etc/nixos/nk3-agent-module.nix", "{ config, lib, pkgs, ... }: { }\n")
        try write("etc/nixos/hardware-configuration.nix", Self.hardwareConfig)
        chmod("\(root)/etc/nixos/hardware-configuration.nix", 0o600)
    }

    func link(_ rel: String) -> String? { try? FileManager.default.destinationOfSymbolicLink(atPath: "\(root)/\(rel)") }

    var profileGeneration: Int? {
        link("nix/var/nix/profiles/system").flatMap { NixOSSystemTestAccess.generation($0, base: "system") }
    }

    var channelGeneration: Int? {
        link("nix/var/nix/profiles/per-user/root/channels").flatMap { NixOSSystemTestAccess.generation($0, base: "channels") }
    }

    func currentSystem() throws -> String { URL(fileURLWithPath: "\(root)/run/current-system").resolvingSymlinksInPath().path }
    func bootedSystem() -> String { URL(fileURLWithPath: "\(root)/run/booted-system").resolvingSymlinksInPath().path }
    func systemOf(generation n: Int) -> String {
        URL(fileURLWithPath: "\(root)/nix/var/nix/profiles/system-\(n)-link").resolvingSymlinksInPath().path
    }

    /// Store path the boot loader would start (set by switch-to-configuration switch|boot).
    var bootDefault: String? { read("control/bootdefault")?.trimmingCharacters(in: .whitespacesAndNewlines) }
    var rebootCount: Int { (read("control/reboots") ?? "").split(separator: "\n").count }
    var bootID: String { (read("proc/sys/kernel/random/boot_id") ?? "").trimmingCharacters(in: .whitespacesAndNewlines) }
    var calls: String { read("control/calls.log") ?? "" }

    func kernel(ofSystem path: String) -> String? {
        (try? FileManager.default.contentsOfDirectory(atPath: "\(path)/kernel-modules/lib/modules"))?.first
    }

    /// The machine restarts: new boot id, the boot default becomes booted and current, kernel follows it.
    /// A one-shot entry set is booted once (and consumed) instead. `oneShotBoots: false`: the one-shot boot
    /// failed (a kernel that never boots) and a reset followed, so the default entry runs.
    func simulateReboot(oneShotBoots: Bool = true) throws {
        let once = try consumeOneShot()
        guard let next = (oneShotBoots ? once : nil) ?? bootDefault else { throw NSError(domain: "fake", code: 1) }
        try sh("ln -sfn '\(next)' \(root)/run/booted-system && ln -sfn '\(next)' \(root)/run/current-system")
        try write("proc/sys/kernel/random/boot_id", UUID().uuidString.lowercased() + "\n")
        try write("proc/sys/kernel/osrelease", (kernel(ofSystem: next) ?? "unknown") + "\n")
        try write("proc/uptime", "3.10 5.00\n")
    }

    /// The store path of the pending one-shot entry, which the boot loader clears as it boots it.
    private func consumeOneShot() throws -> String? {
        var number: Int?
        if let entry = grubNextEntry {
            try sh("sed -i '/^next_entry=/d' \(root)/boot/grub/grubenv")
            let parts = entry.split(separator: ">")
            if parts.count == 2, parts[0] == "1", let k = Int(parts[1]) {
                let gens = ((try? FileManager.default.contentsOfDirectory(atPath: "\(root)/nix/var/nix/profiles")) ?? [])
                    .compactMap { NixOSSystemTestAccess.generation($0, base: "system") }.sorted(by: >)
                if k < gens.count { number = gens[k] }
            }
        } else if let id = systemdOneShot {
            unlink("\(root)/control/oneshot-efivar")
            if id.hasPrefix("nixos-generation-"), id.hasSuffix(".conf") {
                number = Int(id.dropFirst("nixos-generation-".count).dropLast(".conf".count))
            }
        }
        return number.map { systemOf(generation: $0) }
    }

    /// Kills whatever process group `control/rebuild.pid` names (systemd stops the unit's whole cgroup when the
    /// agent's main process dies; tests emulate that for the orphaned fake rebuild).
    func killOrphanedRebuild() {
        if let pid = read("control/rebuild.pid").flatMap({ Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) {
            kill(-pid, SIGKILL)
            kill(pid, SIGKILL)
        }
    }

    @discardableResult
    func sh(_ command: String) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = ["-c", command]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let out = ((try? SecureFiles.readAll(pipe.fileHandleForReading.fileDescriptor, path: "pipe")) ?? Data())
        p.waitUntilExit()
        let text = String(decoding: out, as: UTF8.self)
        if p.terminationStatus != 0 {
            throw NSError(domain: "fake-root", code: Int(p.terminationStatus), userInfo: [NSLocalizedDescriptionKey: "\(command): \(text)"])
        }
        return text
    }

    // MARK: scripts

    private func script(_ name: String, _ body: String) throws {
        let path = "\(root)/bin/\(name)"
        try ("#!/bin/bash\nset -u\nR='\(root)'\n" + body).write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, 0o755)
    }

    private func installScripts() throws {
        try script(
            "nix-env",
            #"""
            echo "nix-env $*" >> "$R/control/calls.log"
            [ "$1" = -p ] || { echo "error: this fake nix-env needs -p PROFILE" >&2; exit 1; }
            p="$2"; op="$3"; dir=$(dirname "$p"); base=$(basename "$p")
            max=$(ls "$dir" | sed -n "s/^$base-\([0-9]*\)-link\$/\1/p" | sort -n | tail -1); max=${max:-0}
            cur=$(readlink "$p" | sed -n "s/^$base-\([0-9]*\)-link\$/\1/p")
            case "$op" in
              --set)
                target="$4"
                # --set makes generation highest+1, unless the highest already points there
                # (docs/UPSTREAM.md#generations).
                if [ "$max" -gt 0 ] && [ "$(readlink "$dir/$base-$max-link")" = "$target" ]; then n=$max
                else n=$((max+1)); ln -s "$target" "$dir/$base-$n-link"; fi
                ln -sfn "$base-$n-link" "$p" ;;
              --switch-generation)
                n="$4"
                [ -e "$dir/$base-$n-link" ] || { echo "error: profile version $n does not exist" >&2; exit 1; }
                echo "switching profile from version $cur to $n" >&2
                ln -sfn "$base-$n-link" "$p" ;;
              *) echo "error: unsupported nix-env operation $op" >&2; exit 1 ;;
            esac
            """#)
        try script(
            "nix-channel",
            #"""
            echo "nix-channel $*" >> "$R/control/calls.log"
            F="$R/root/.nix-channels"; P="$R/nix/var/nix/profiles/per-user/root/channels"; dir=$(dirname "$P")
            case "$1" in
              --add)
                url="$2"; name="${3:-nixos}"; touch "$F"
                grep -v " $name\$" "$F" > "$F.tmp"; echo "$url $name" >> "$F.tmp"; mv "$F.tmp" "$F" ;;
              --update)
                name="${2:-nixos}"; url=$(awk -v n="$name" '$2==n{print $1}' "$F")
                case "$url" in *bogus*)
                  # docs/UPSTREAM.md#channels: the bogus name only fails here, and the channel profile stays as it was.
                  echo "error: unable to download '$url/nixexprs.tar.xz': HTTP error 404" >&2; exit 1 ;;
                esac
                echo "unpacking channels..." >&2
                content="$url rev=$(cat "$R/control/channel-rev" 2>/dev/null || echo 1)"
                max=$(ls "$dir" | sed -n 's/^channels-\([0-9]*\)-link$/\1/p' | sort -n | tail -1); max=${max:-0}
                if [ "$max" -gt 0 ] && [ "$(cat "$dir/channels-$max-link/content" 2>/dev/null)" = "$content" ]; then exit 0; fi
                n=$((max+1)); mkdir -p "$R/nix/store/channels-$n/nixos"; echo "$content" > "$R/nix/store/channels-$n/content"
                # What nixpkgs' nixos/lib/make-channel.nix puts at the top of a channel tarball (written with echo -n).
                base="${url##*/}"; rev=$(cat "$R/control/channel-rev" 2>/dev/null || echo 1)
                printf '%s' "${base#nixos-}" > "$R/nix/store/channels-$n/nixos/.version"
                printf '.%s.0123456789ab' "$rev" > "$R/nix/store/channels-$n/nixos/.version-suffix"
                printf '0123456789ab%028d' 0 > "$R/nix/store/channels-$n/nixos/.git-revision"
                ln -s "$R/nix/store/channels-$n" "$dir/channels-$n-link"; ln -sfn "channels-$n-link" "$P" ;;
              --rollback)
                n="$2"; [ -e "$dir/channels-$n-link" ] || { echo "error: profile version $n does not exist" >&2; exit 1; }
                ln -sfn "channels-$n-link" "$P" ;;
              --list) awk '{print $2, $1}' "$F" ;;
              *) echo "error: unsupported" >&2; exit 1 ;;
            esac
            """#)
        try script(
            "systemctl",
            #"""
            echo "systemctl $*" >> "$R/control/calls.log"
            case "$1" in
              is-active) if [ -e "$R/control/unit-$2-active" ]; then echo active; exit 0; else echo inactive; exit 3; fi ;;
              reboot) echo "reboot $(cat "$R/proc/sys/kernel/random/boot_id")" >> "$R/control/reboots"; exit 0 ;;
              *) exit 1 ;;
            esac
            """#)
        try script(
            "grub-reboot",
            #"""
            echo "grub-reboot $#:$(printf ' %q' "$@")" >> "$R/control/calls.log"
            [ $# = 1 ] || { echo "Usage: grub-reboot [OPTION] MENU_ENTRY" >&2; exit 1; }
            touch "$R/boot/grub/grubenv"; sed -i '/^next_entry=/d' "$R/boot/grub/grubenv"
            echo "next_entry=$1" >> "$R/boot/grub/grubenv"
            """#)
        try script(
            "grub-editenv",
            #"""
            echo "grub-editenv $#:$(printf ' %q' "$@")" >> "$R/control/calls.log"
            [ "$2" = unset ] || { echo "grub-editenv: error: this fake knows only FILE unset NAME" >&2; exit 1; }
            touch "$1"; sed -i "/^$3=/d" "$1"
            """#)
        try script(
            "bootctl",
            #"""
            echo "bootctl $#:$(printf ' %q' "$@")" >> "$R/control/calls.log"
            [ "$1" = set-oneshot ] && [ $# = 2 ] || { echo "bootctl: this fake knows only set-oneshot ID" >&2; exit 1; }
            if [ -z "$2" ]; then rm -f "$R/control/oneshot-efivar"; else echo "$2" > "$R/control/oneshot-efivar"; fi
            """#)
        try script(
            "switch-to-configuration.template",
            #"""
            self="$(cd "$(dirname "$0")/.." && pwd -P)"; mode="$1"
            echo "switch-to-configuration $mode $self" >> "$R/control/calls.log"
            rc=$(cat "$self/activation-exit" 2>/dev/null || echo 0)
            # Bootloader first (switch|boot), then boot exits 0, then the init-interface check (100)
            # (docs/UPSTREAM.md#generations).
            case "$mode" in switch|boot) echo "$self" > "$R/control/bootdefault" ;; esac
            [ "$mode" = boot ] && exit 0
            if [ "$rc" = 100 ]; then echo "the new init interface won't take effect until you reboot" >&2; exit 100; fi
            ln -sfn "$self" "$R/run/current-system"
            if [ "$rc" != 0 ]; then echo "warning: the following units failed: broken.service" >&2; fi
            exit "$rc"
            """#)
        try script(
            "nixos-rebuild",
            #"""
            action="$1"; shift; upgrade=0
            for a in "$@"; do [ "$a" = --upgrade ] && upgrade=1; done
            echo "$$" > "$R/control/rebuild.pid"
            echo "nixos-rebuild $action upgrade=$upgrade" >> "$R/control/calls.log"
            echo "building the system configuration..." >&2
            if [ "$upgrade" = 1 ]; then "$R/bin/nix-channel" --update nixos || exit 1; fi
            cfg="$R/etc/nixos/configuration.nix"
            [ -f "$cfg" ] || { echo "error: file 'nixos-config' was not found in the Nix search path" >&2; exit 1; }
            if grep -q EVAL_ERROR "$cfg"; then
              echo "error: undefined variable 'EVAL_ERROR'" >&2
              echo "       at /etc/nixos/configuration.nix:3:5:" >&2
              exit 1
            fi
            [ -e "$R/control/hang-build" ] && sleep 600
            # A FIFO here holds the build until the test writes a line to it.
            [ -p "$R/control/hold-build" ] && read -r _ < "$R/control/hold-build"
            kernel=$(sed -n 's/^ *# kernel: //p' "$cfg" | head -1); kernel=${kernel:-6.6.1}
            version=$(sed -n 's/^ *# version: //p' "$cfg" | head -1); version=${version:-24.05.1}
            actexit=$(sed -n 's/^ *# activation-exit: //p' "$cfg" | head -1); actexit=${actexit:-0}
            chan=$(cat "$R/nix/var/nix/profiles/per-user/root/channels/content" 2>/dev/null)
            hash=$( (cat "$R"/etc/nixos/*; echo "$chan") | sha256sum | cut -c1-12)
            out="$R/nix/store/$hash-nixos-system-node1-$version"
            if [ ! -d "$out" ]; then
              echo "these 3 derivations will be built:" >&2
              for d in etc system-path "nixos-system-node1-$version"; do echo "  /nix/store/$hash-$d.drv" >&2; done
              echo "these 2 paths will be fetched (1.50 MiB download, 7.00 MiB unpacked):" >&2
              echo "  /nix/store/aaaa-linux-$kernel" >&2; echo "  /nix/store/bbbb-firmware" >&2
              mkdir -p "$out/bin" "$out/kernel-modules/lib/modules/$kernel"
              echo "$version" > "$out/nixos-version"; echo "$actexit" > "$out/activation-exit"
              cp "$R/bin/switch-to-configuration.template" "$out/bin/switch-to-configuration"
            fi
            case "$action" in
              switch|boot)
                # docs/UPSTREAM.md#nixos-rebuild: the profile is set before activation runs.
                "$R/bin/nix-env" -p "$R/nix/var/nix/profiles/system" --set "$out" || exit 1
                [ -e "$R/control/hang-activation" ] && sleep 600
                "$out/bin/switch-to-configuration" "$action"; rc=$?
                if [ $rc -ne 0 ]; then
                  echo "warning: error(s) occurred while switching to the new configuration" >&2
                  if [ -e "$R/control/ng" ]; then exit $rc; else exit 1; fi
                fi ;;
              test) "$out/bin/switch-to-configuration" test || exit 1 ;;
              *) echo "error: unsupported action $action" >&2; exit 1 ;;
            esac
            [ -e "$R/control/ng" ] && { echo "Done. The new configuration is $out" >&2; echo "$out"; }
            exit 0
            """#)
    }
}

enum NixOSSystemTestAccess {
    static func generation(_ linkName: String, base: String) -> Int? {
        guard linkName.hasPrefix(base + "-"), linkName.hasSuffix("-link") else { return nil }
        return Int(linkName.dropFirst(base.count + 1).dropLast(5))
    }
}
