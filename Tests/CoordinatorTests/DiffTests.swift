import Foundation
import NK3Common
import NK3Coordinator
import Testing

@Suite("UnifiedDiff")
struct DiffTests {
    /// The Python nk3 README's template change: one line added after line 14 (its sample output,
    /// github.com/nihr43/nk3).
    static let before = """
        # Rendered by nk3
        { config, pkgs, lib, ... }:

        {
          imports = [
            ./hardware-configuration.nix
            ./nk3-agent.nix
          ];

          networking.hostName = "d752cf78-d889-5bd9-8dd4-2bb7eeb898f4";
          boot.loader.grub.enable = true;
          boot.loader.grub.devices = ["/dev/nvme0n1"];
          boot.tmp.cleanOnBoot = true;
          boot.kernelModules = [ "rbd" ];

          environment.systemPackages = with pkgs; [
            htop
            vim
          ];
        }

        """

    @Test("the Python nk3's one-line-added hunk, exactly as the sample output shows it")
    func seedHunk() {
        let after = Self.before.replacingOccurrences(
            of: "  boot.kernelModules = [ \"rbd\" ];\n",
            with: "  boot.kernelModules = [ \"rbd\" ];\n  hardware.cpu.amd.updateMicrocode = true;\n")
        let expected = """
            --- 
            +++ 
            @@ -12,6 +12,7 @@
               boot.loader.grub.devices = ["/dev/nvme0n1"];
               boot.tmp.cleanOnBoot = true;
               boot.kernelModules = [ "rbd" ];
            +  hardware.cpu.amd.updateMicrocode = true;
             
               environment.systemPackages = with pkgs; [
                 htop

            """
        #expect(UnifiedDiff.make(old: Self.before, new: after) == expected)
    }

    @Test("equal texts give no diff")
    func equal() {
        #expect(UnifiedDiff.make(old: Self.before, new: Self.before) == "")
        #expect(UnifiedDiff.make(old: "", new: "") == "")
        #expect(UnifiedDiff.hunks(old: "a\n", new: "a\n").isEmpty)
    }

    /// Cases checked against GNU diff at test time.
    static let cases: [(String, String, String)] = [
        ("one line added", before, before.replacingOccurrences(of: "    htop\n", with: "    htop\n    jq\n")),
        ("replace and delete far apart",
         (1...40).map { "line \($0)\n" }.joined(),
         (1...40).filter { $0 != 5 }.map { $0 == 30 ? "LINE 30\n" : "line \($0)\n" }.joined()),
        ("two changes close enough to merge",
         (1...20).map { "l\($0)\n" }.joined(),
         (1...20).map { $0 == 5 || $0 == 11 ? "x\($0)\n" : "l\($0)\n" }.joined()),
        ("from empty", "", "a\nb\n"),
        ("to empty", "a\nb\nc\n", ""),
        ("no newline at end, changed", "a\nb\nc", "a\nb\nd"),
        ("newline added at end", "a\nb", "a\nb\n"),
        ("no newline at end, unchanged last line", "x\na\nb\nc\nd\ne", "y\na\nb\nc\nd\ne"),
        ("prepend and append", "m1\nm2\nm3\nm4\nm5\nm6\nm7\nm8\nm9\n", "top\nm1\nm2\nm3\nm4\nm5\nm6\nm7\nm8\nm9\nbottom\n"),
        ("block rewrite", "a\nb\nc\nd\ne\nf\ng\n", "a\nB\nC\nd\ne\nF\ng\nh\n"),
    ]

    @Test("hunks equal GNU diff -u output", arguments: 0..<cases.count)
    func matchesGNUDiff(_ index: Int) throws {
        let (name, old, new) = Self.cases[index]
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/diff") else { return }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nk3-diff-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = dir.appendingPathComponent("a")
        let b = dir.appendingPathComponent("b")
        try Data(old.utf8).write(to: a)
        try Data(new.utf8).write(to: b)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/diff")
        p.arguments = ["-u", a.path, b.path]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let out = ((try? SecureFiles.readAll(pipe.fileHandleForReading.fileDescriptor, path: "pipe")) ?? Data())
        p.waitUntilExit()
        #expect(p.terminationStatus == 1, "\(name): diff should report a difference")
        // Drop GNU's two header lines (they carry paths and timestamps); compare the hunks.
        let gnu = String(decoding: out, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
            .dropFirst(2).joined(separator: "\n")
        let ours = UnifiedDiff.make(old: old, new: new).split(separator: "\n", omittingEmptySubsequences: false)
            .dropFirst(2).joined(separator: "\n")
        #expect(ours == gnu, "\(name)")
    }

    @Test("colour: red -, green +, cyan @@; none when not a terminal or NO_COLOR is set")
    func color() {
        let d = UnifiedDiff.make(old: "a\n", new: "b\n")
        let c = DiffColor.colorize(d)
        #expect(c.contains("\u{1B}[31m-a\u{1B}[0m\n"))
        #expect(c.contains("\u{1B}[32m+b\u{1B}[0m\n"))
        #expect(c.contains("\u{1B}[36m@@ -1 +1 @@\u{1B}[0m\n"))
        #expect(DiffColor.shouldColor(isTerminal: true, environment: [:]))
        #expect(!DiffColor.shouldColor(isTerminal: false, environment: [:]))
        #expect(!DiffColor.shouldColor(isTerminal: true, environment: ["NO_COLOR": "1"]))
        #expect(DiffColor.shouldColor(isTerminal: true, environment: ["NO_COLOR": ""]))
    }
}
