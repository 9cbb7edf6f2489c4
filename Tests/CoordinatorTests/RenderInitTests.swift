import Foundation
import NK3Common
import Testing

@testable import NK3Coordinator

/// `nk3 render` (RenderedFiles) and `nk3 init` (ClusterScaffold): real files, a real PKI, nothing contacted.
@Suite("nk3 render and nk3 init")
struct RenderInitTests {
    static let fixtures = Bundle.module.resourceURL!.appendingPathComponent("Fixtures/jinja")

    func tempDir() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nk3-render-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test("render writes every node's bundle; configuration.nix is byte for byte Jinja2's")
    func renderAll() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let inventory = "\(dir)/inventory.yaml"
        try FileManager.default.copyItem(atPath: Self.fixtures.appendingPathComponent("inventory.yaml").path, toPath: inventory)
        let pki = PKIStore(directory: "\(dir)/pki")
        _ = try pki.initialize(cluster: "fixture")
        let written = try RenderedFiles.render(
            inventoryPath: inventory, pkiDirectory: pki.directory, nodes: [], outputDirectory: "\(dir)/artifacts")
        let inv = try Inventory.load(path: inventory)
        #expect(written.count == inv.nodes.count * BundleFile.all.count)
        for node in inv.nodes {
            let expected = try Data(contentsOf: Self.fixtures.appendingPathComponent("expected/default/\(node.name)"))
            let got = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/artifacts/\(node.name)/\(BundleFile.configuration)"))
            #expect(got == expected, "\(node.name)")
            let agent = try String(contentsOfFile: "\(dir)/artifacts/\(node.name)/\(BundleFile.agent)", encoding: .utf8)
            #expect(agent.contains(try pki.signingPublicKey()))
            #expect(agent.contains("nodeName = \"\(node.name)\";"))
        }
    }

    @Test("render picks nodes by name or address, refuses unknown ones and a missing PKI")
    func renderSome() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let inventory = "\(dir)/inventory.yaml"
        try FileManager.default.copyItem(atPath: Self.fixtures.appendingPathComponent("inventory.yaml").path, toPath: inventory)
        do {
            _ = try RenderedFiles.render(inventoryPath: inventory, pkiDirectory: "\(dir)/pki", nodes: [], outputDirectory: "\(dir)/out")
            Issue.record("rendered without a signing key")
        } catch let e as CoordinatorError {
            #expect(e.message.contains("nk3 certs init"))
        }
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/out"))
        _ = try PKIStore(directory: "\(dir)/pki").initialize(cluster: "fixture")
        let written = try RenderedFiles.render(
            inventoryPath: inventory, pkiDirectory: "\(dir)/pki", nodes: ["edge-3", "172.30.190.198"],
            outputDirectory: "\(dir)/out")
        let dirs = Set(written.map { URL(fileURLWithPath: $0).deletingLastPathComponent().lastPathComponent })
        #expect(dirs == ["edge-3", "d752cf78-d889-5bd9-8dd4-2bb7eeb898f4"])
        #expect(throws: CoordinatorError.self) {
            try RenderedFiles.render(inventoryPath: inventory, pkiDirectory: "\(dir)/pki", nodes: ["nope"], outputDirectory: "\(dir)/out")
        }
    }

    @Test("init makes a cluster that loads, renders and keeps its agent; refuses to overwrite")
    func initCluster() throws {
        let base = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let dir = "\(base)/lab"
        let created = try ClusterScaffold.create(directory: dir, cluster: "lab")
        #expect(created.pki == "\(dir)/certs/lab")
        let mode = try FileManager.default.attributesOfItem(atPath: created.inventory)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let inv = try Inventory.load(path: created.inventory)
        #expect(inv.clusterName == "lab")
        #expect(inv.pkiDirectory == created.pki)
        #expect(inv.templatePath == created.template)
        let token = try #require(inv.topLevel.first { $0.key == "join_token" }?.value.stringValue)
        #expect(token.count == 64)
        // The PKI is what `nk3 certs init` makes: CA, signing key, operator certificate.
        let store = PKIStore(directory: created.pki)
        #expect(try store.signingPublicKey() == created.signingPublicKey)
        #expect(FileManager.default.fileExists(atPath: created.operatorFiles.certificatePath))
        // The template renders for the example node, importing both files, as the built-in template would.
        let renderer = try BundleRenderer.load(inventory: inv, signingPublicKeys: [created.signingPublicKey])
        let config = try #require(try renderer.render(node: inv.nodes[0])[BundleFile.configuration])
        #expect(config.contains("./hardware-configuration.nix"))
        #expect(config.contains("./nk3-agent.nix"))
        let builtIn = BundleRenderer(inventory: inv, template: nil, signingPublicKeys: [created.signingPublicKey])
        #expect(config == (try builtIn.render(node: inv.nodes[0])[BundleFile.configuration]))
        // Nothing is overwritten: a second init in the same (now non-empty) directory fails and changes nothing.
        let before = try Data(contentsOf: URL(fileURLWithPath: created.inventory))
        #expect(throws: CoordinatorError.self) { try ClusterScaffold.create(directory: dir, cluster: "lab") }
        #expect(try Data(contentsOf: URL(fileURLWithPath: created.inventory)) == before)
        #expect(throws: CoordinatorError.self) { try ClusterScaffold.create(directory: "\(base)/x", cluster: "Bad_Name") }
    }
}
