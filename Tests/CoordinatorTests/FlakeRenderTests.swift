import Foundation
import NK3Common
import NK3Jinja
import NK3Protocol
import Testing

@testable import NK3Coordinator

/// Flake mode's rendering: `flake: true` adds flake.nix (the default flake template) and flake.lock (the inventory
/// directory's, else the node's own) to each bundle; without it the bundle is what it always was. The rendered
/// flake.nix parses as Nix, and its `outputs`, evaluated with nixpkgs' real lib and a stand-in `nixosSystem`, give
/// each node its `nixosConfigurations` entry built from ./configuration.nix.
@Suite("Flake mode: rendering")
struct FlakeRenderTests {
    static let signingKey = Data(repeating: 7, count: 32).base64EncodedString()
    static let rev = String(repeating: "c", count: 40)
    static let lock = #"{"nodes":{"nixpkgs":{"locked":{"owner":"NixOS","repo":"nixpkgs","rev":""# + rev
        + #"","type":"github"}},"root":{"inputs":{"nixpkgs":"nixpkgs"}}},"root":"root","version":7}"# + "\n"

    static func inventoryYAML(flake: String?) -> String {
        """
        join_address: 10.0.0.1
        join_token: woof
        nix_channel: https://nixos.org/channels/nixos-24.05
        state_version: "24.05"
        nodes:
          10.0.0.1:
            hostname: k3s-a
            boot_device: /dev/sda
            initiator: true
          10.0.0.2:
            hostname: k3s-b
            boot_device: /dev/sda
            system: aarch64-linux

        """ + (flake.map { "flake: \($0)\n" } ?? "")
    }

    /// A temp directory with the inventory (and `files` beside it); returns the renderer `nk3` would load.
    static func renderer(flake: String?, files: [String: String] = [:]) throws -> (BundleRenderer, URL) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nk3-flake-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.appendingPathComponent("inventory.yaml").path
        try inventoryYAML(flake: flake).write(toFile: path, atomically: true, encoding: .utf8)
        for (name, content) in files {
            try content.write(to: dir.appendingPathComponent(name), atomically: true, encoding: .utf8)
        }
        return (try BundleRenderer.load(inventory: try Inventory.load(path: path), signingPublicKeys: [signingKey]), dir)
    }

    @Test("without flake: the channel bundle, unchanged")
    func channelModeUnchanged() throws {
        for flake in [nil, "false"] {
            let (r, dir) = try Self.renderer(flake: flake, files: ["flake.lock": Self.lock])
            defer { try? FileManager.default.removeItem(at: dir) }
            #expect(r.inventory.flake == nil)
            for (_, files) in try r.renderAll() { #expect(files.keys.sorted() == BundleFile.all.sorted()) }
        }
    }

    @Test("flake: true: flake.nix names the node and nix_channel's branch; every node gets the inventory's flake.lock")
    func flakeFilesFromTheInventory() throws {
        let (r, dir) = try Self.renderer(flake: "true", files: ["flake.lock": Self.lock])
        defer { try? FileManager.default.removeItem(at: dir) }
        let all = try r.renderAll()
        #expect(all.keys.sorted() == ["k3s-a", "k3s-b"])
        for (node, files) in all {
            #expect(files.keys.sorted() == (BundleFile.all + ["flake.lock", "flake.nix"]).sorted())
            #expect(files["flake.lock"] == Self.lock)
            let flake = try #require(files["flake.nix"])
            #expect(flake.contains("nixosConfigurations.\"\(node)\" = nixpkgs.lib.nixosSystem"), "\(flake)")
            #expect(flake.contains("inputs.nixpkgs.url = \"github:NixOS/nixpkgs/nixos-24.05\";"), "\(flake)")
            #expect(ApplyBundle(files: files, action: .boot, flake: node).validationProblem() == nil)
        }
        #expect(all["k3s-b"]?["flake.nix"]?.contains("mkDefault \"aarch64-linux\"") == true)
    }

    @Test("flake: true without a lock beside the inventory: each node keeps the lock it reports, or gets none")
    func reportedLocks() throws {
        var (r, dir) = try Self.renderer(flake: "true")
        defer { try? FileManager.default.removeItem(at: dir) }
        r.reportedFlakeLocks = ["k3s-a": Self.lock]
        let all = try r.renderAll()
        #expect(all["k3s-a"]?["flake.lock"] == Self.lock)
        #expect(all["k3s-b"]?["flake.lock"] == nil)
        #expect(all["k3s-b"]?["flake.nix"] != nil)
    }

    @Test("a flake template that does not build ./configuration.nix is refused: the node would lose its agent")
    func templateMustUseConfiguration() throws {
        let (r, dir) = try Self.renderer(
            flake: "my-flake.nix.j2",
            files: ["my-flake.nix.j2": "{ outputs = { nixpkgs, ... }: { }; } # ./configuration.nix\n", "flake.lock": Self.lock])
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(r.inventory.flake?.templatePath?.hasSuffix("my-flake.nix.j2") == true)
        #expect(throws: BundleError.self) { try r.renderAll() }
    }

    @Test("a node name that cannot be a flake attribute is refused, naming the hostvar that fixes it")
    func badNodeName() throws {
        let yaml = Self.inventoryYAML(flake: "true").replacingOccurrences(of: "hostname: k3s-a", with: "hostname: k3s.a")
        let inv = try Inventory.parse(yaml: yaml, file: "inventory.yaml")
        let r = BundleRenderer(inventory: inv, template: nil, signingPublicKeys: [Self.signingKey])
        do {
            _ = try r.renderAll()
            Issue.record("rendered")
        } catch {
            #expect(error.message.contains("'hostname' hostvar"), "\(error)")
        }
    }

    static let nixInstantiate = RenderedNixParseTests.nixInstantiate
    /// nixpkgs' lib: ../shared/nixpkgs-lib/lib beside the checkout (as Tests/AgentTests/Support/NixEval.swift finds it).
    static let nixpkgsLib = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared/nixpkgs-lib/lib")
    static var canEvaluate: Bool {
        nixInstantiate != nil && FileManager.default.fileExists(atPath: nixpkgsLib.appendingPathComponent("default.nix").path)
    }

    @Test("the rendered flake.nix parses, and its outputs evaluate with nixpkgs' lib", .enabled(if: canEvaluate, "needs nix-instantiate and ../shared/nixpkgs-lib"))
    func flakeEvaluates() throws {
        let (r, dir) = try Self.renderer(flake: "true", files: ["flake.lock": Self.lock])
        defer { try? FileManager.default.removeItem(at: dir) }
        let files = try #require(try r.renderAll()["k3s-b"])
        try RenderedNixParseTests.parse(files.filter { $0.key.hasSuffix(".nix") }, label: "k3s-b")
        let node = dir.appendingPathComponent("node")
        try FileManager.default.createDirectory(at: node, withIntermediateDirectories: true)
        for (name, content) in files { try content.write(to: node.appendingPathComponent(name), atomically: true, encoding: .utf8) }
        // The flake's outputs with stand-in inputs: nixpkgs' real lib, and a nixosSystem that returns its arguments;
        // the inline module is evaluated by lib.evalModules against a declaration of nixpkgs.hostPlatform.
        let expr = """
            let
              lib = import \(Self.nixpkgsLib.path);
              flake = import \(node.path)/flake.nix;
              nixpkgs = { lib = lib // { nixosSystem = args: args; }; };
              outputs = flake.outputs { self = outputs; inherit nixpkgs; };
              cfg = outputs.nixosConfigurations."k3s-b";
              inline = lib.evalModules { modules = [
                { options.nixpkgs.hostPlatform = lib.mkOption { type = lib.types.str; }; }
                (builtins.elemAt cfg.modules 1)
              ]; };
            in {
              url = flake.inputs.nixpkgs.url;
              names = builtins.attrNames outputs.nixosConfigurations;
              first = if builtins.isPath (builtins.head cfg.modules) then baseNameOf (builtins.head cfg.modules) else null;
              count = builtins.length cfg.modules;
              platform = inline.config.nixpkgs.hostPlatform;
            }
            """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.nixInstantiate!)
        p.arguments = ["--eval", "--strict", "--json", "--readonly-mode", "-E", expr]
        let out = Pipe()
        let errPath = dir.appendingPathComponent("stderr").path
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        p.standardOutput = out
        p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        try p.run()
        let data = (try? SecureFiles.readAll(out.fileHandleForReading.fileDescriptor, path: "pipe")) ?? Data()
        p.waitUntilExit()
        let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        try #require(p.terminationStatus == 0, "\(err)")
        struct Result: Decodable { var url: String; var names: [String]; var first: String?; var count: Int; var platform: String }
        let result = try JSONDecoder().decode(Result.self, from: data)
        #expect(result.url == "github:NixOS/nixpkgs/nixos-24.05")
        #expect(result.names == ["k3s-b"])
        #expect(result.first == "configuration.nix")
        #expect(result.count == 2)
        #expect(result.platform == "aarch64-linux")
    }
}
