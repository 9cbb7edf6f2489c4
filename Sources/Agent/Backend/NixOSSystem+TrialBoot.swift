#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NK3Common
import NK3Protocol

// Trial boot on a real node (docs/RELIABILITY.md#trial-boot): the old generation stays the boot loader's default,
// the new one is booted once, and only the signed confirm makes it the default.
//
// - Default entry: `system-N-link/bin/switch-to-configuration boot` runs the boot loader installer with that
//   toplevel, which becomes the default entry while every profile generation stays in the menu (nixpkgs
//   nixos/modules/system/boot/loader/grub/install-grub.pl: the top-level "NixOS" entry is the toplevel passed in,
//   the "NixOS - All configurations" submenu lists the profile's generations newest first;
//   nixos/modules/system/boot/loader/systemd-boot/systemd-boot-builder.py: `default` in loader.conf is the entry
//   whose toplevel matches, every generation gets `loader/entries/nixos-generation-N.conf`). The profile is not
//   moved: the new generation stays the profile's newest, so its menu entry exists.
// - One-shot, GRUB: `grub-reboot ENTRY` writes `next_entry` into grubenv; the grub.cfg that install-grub.pl writes
//   boots it once and clears it (`save_env next_entry`). grub-reboot documents that it needs `GRUB_DEFAULT=saved`,
//   which the module sets (`boot.loader.grub.default = "saved"`). ENTRY is the menu path by position: ">"
//   separates a submenu from its entry (GRUB manual, "default"), the submenu is the second top-level entry and
//   lists generations newest first. Clearing: `grub-editenv GRUBENV unset next_entry`.
// - One-shot, systemd-boot: `bootctl set-oneshot nixos-generation-N.conf` sets the `LoaderEntryOneShot` EFI
//   variable; an empty ID unsets it (systemd bootctl(1)).
extension NixOSSystem {
    public func trialBootLoader() async -> TrialBootLoader? { options.trialBoot }

    public func setBootDefault(generation number: Int) async throws {
        let link = try generationLink(number)
        let result = try await runChecked(
            "\(link)/bin/switch-to-configuration", ["boot"], timeout: options.activationTimeout, allowFailure: true)
        guard result.exitCode == 0 else {
            throw NodeSystemError(
                .processFailed,
                "switch-to-configuration boot of generation \(number) (to make it the boot default) exited "
                    + "\(result.exitCode): \(Self.tail(result.output))")
        }
    }

    public func setBootOnce(generation number: Int?) async throws {
        guard let loader = options.trialBoot else {
            throw NodeSystemError(
                .invalidInput, "no trial-boot loader configured (trialBoot is off); cannot set a one-shot entry")
        }
        switch (loader, number) {
        case (.grub, let n?):
            _ = try await runChecked(options.grubReboot, [try grubEntry(of: n)], timeout: options.commandTimeout)
        case (.grub, nil):
            _ = try await runChecked(
                options.grubEditenv, [rooted(options.grubEnv), "unset", "next_entry"], timeout: options.commandTimeout)
        case (.systemdBoot, let n?):
            _ = try generationLink(n)
            _ = try await runChecked(
                options.bootctl, ["set-oneshot", Self.systemdBootEntry(n)], timeout: options.commandTimeout)
        case (.systemdBoot, nil):
            _ = try await runChecked(options.bootctl, ["set-oneshot", ""], timeout: options.commandTimeout)
        }
    }

    /// systemd-boot's entry for generation `n` (systemd-boot-builder.py names them `nixos-generation-N.conf`).
    static func systemdBootEntry(_ n: Int) -> String { "nixos-generation-\(n).conf" }

    /// GRUB menu path of generation `n`: `1>K`, K its position among the profile's generations, newest first.
    func grubEntry(of n: Int) throws -> String {
        _ = try generationLink(n)
        let numbers = try profileGenerationNumbers().sorted(by: >)
        guard let k = numbers.firstIndex(of: n) else {
            throw NodeSystemError(.notFound, "generation \(n) is not in the system profile")
        }
        return "1>\(k)"
    }

    func generationLink(_ number: Int) throws -> String {
        let profile = rooted(options.systemProfile)
        let link = "\(PathName.deletingLastComponent(profile))/\(PathName.lastComponent(profile))-\(number)-link"
        guard realPath(link) != nil else {
            throw NodeSystemError(
                .notFound, "generation \(number) does not exist (\(link) is missing); it may have been garbage-collected")
        }
        return link
    }

    func profileGenerationNumbers() throws -> [Int] {
        let profile = rooted(options.systemProfile)
        let base = PathName.lastComponent(profile)
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: PathName.deletingLastComponent(profile))) ?? []
        return entries.compactMap { Self.generationNumber(linkName: $0, profileBase: base) }
    }
}
