import Foundation
import NK3Common
import Logging
import NK3Coordinator
import NK3Simulation
import Testing

/// Every configuration nk3 would ship must at least parse as Nix (issue 7: CI runs `nix-instantiate --parse`
/// on the configurations rendered by the default template and by the demo inventory). Skipped, saying so, where
/// Debian's nix-bin is not installed; `.ci/run` installs it.
@Suite("rendered configurations parse as Nix")
struct RenderedNixParseTests {
    static let nixInstantiate: String? = ["/usr/bin/nix-instantiate", "/usr/local/bin/nix-instantiate", "/run/current-system/sw/bin/nix-instantiate"]
        .first { FileManager.default.isExecutableFile(atPath: $0) }

    static func parse(_ files: [String: String], label: String) throws {
        guard let nix = nixInstantiate else { return }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nk3-nixparse-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for (name, content) in files {
            let path = dir.appendingPathComponent(name).path
            try content.write(toFile: path, atomically: true, encoding: .utf8)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: nix)
            p.arguments = ["--parse", path]
            let err = Pipe()
            p.standardOutput = FileHandle.nullDevice
            p.standardError = err
            try p.run()
            let msg = String(decoding: ((try? SecureFiles.readAll(err.fileHandleForReading.fileDescriptor, path: "pipe")) ?? Data()), as: UTF8.self)
            p.waitUntilExit()
            #expect(p.terminationStatus == 0, "\(label) \(name) does not parse: \(msg)")
        }
    }

    @Test("the seed inventory rendered with the default template", .enabled(if: nixInstantiate != nil, "nix-instantiate not installed (apt-get install nix-bin)"))
    func seedInventory() throws {
        let url = Bundle.module.url(forResource: "seed-inventory", withExtension: "yaml", subdirectory: "Fixtures")!
        // The seed's file plus the state_version the default template needs (the seed predates it).
        let inventory = try Inventory.parse(
            yaml: try String(contentsOf: url, encoding: .utf8) + "state_version: \"24.05\"\n", file: url.path)
        let bundles = try BundleRenderer(
            inventory: inventory, template: nil, signingPublicKeys: [Data(repeating: 7, count: 32).base64EncodedString()]
        ).renderAll()
        #expect(bundles.count == 3)
        for (node, files) in bundles {
            #expect(files.keys.sorted() == BundleFile.all.sorted())
            try Self.parse(files, label: node)
        }
    }

    @Test("the demo's simulated-cluster inventory, with and without the demo's template change", .enabled(if: nixInstantiate != nil, "nix-instantiate not installed (apt-get install nix-bin)"))
    func demoInventory() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nk3-nixparse-sim-\(UUID().uuidString)")
        var options = SimulatedCluster.Options()
        options.announce = false
        var logger = Logger(label: "test.nixparse")
        logger.logLevel = .warning
        let cluster = try await SimulatedCluster.start(nodes: 2, speed: .instant, in: dir, options: options, logger: logger)
        do {
            let session = try ClusterSession.load(inventoryPath: cluster.inventoryPath, logger: logger)
            for (node, files) in try session.render() { try Self.parse(files, label: node) }
            let changed = DefaultTemplate.source.replacingOccurrences(
                of: "  boot.kernelModules = [ \"rbd\" ];\n", with: "  boot.kernelModules = [ \"rbd\" ];\n\(DemoRunner.changedLine)\n")
            let rendered = try BundleRenderer(
                inventory: session.inventory, template: JinjaTemplate(source: changed, name: "demo"),
                signingPublicKeys: [try session.pki.signingPublicKey()]
            ).renderAll()
            for (node, files) in rendered {
                #expect(files["configuration.nix"]?.contains("hardware.cpu.amd.updateMicrocode = true;") == true)
                try Self.parse(files, label: "\(node) (demo change)")
            }
        } catch {
            await cluster.shutdown()
            throw error
        }
        await cluster.shutdown()
        try? FileManager.default.removeItem(at: dir)
    }
}
