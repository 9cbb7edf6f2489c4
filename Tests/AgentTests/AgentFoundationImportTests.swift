import Foundation
import Testing

/// The agent's modules must import `FoundationEssentials` where it exists, never full Foundation: one plain
/// `import Foundation` links FoundationInternationalization and ICU into `nk3-agent` and costs every node several MiB
/// of resident code (BENCHMARKS.md, the agent's RSS). A file added with `import Foundation` did exactly that once.
@Suite("The agent's modules import FoundationEssentials only")
struct AgentFoundationImportTests {
    /// The source directories compiled into `nk3-agent` (Package.swift: the nk3-agent target and its NK3 modules).
    static let agentSourceDirectories = ["Sources/Agent", "Sources/Common", "Sources/Protocol", "Sources/nk3-agent"]

    static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// Files with an `import Foundation` that is not the `#else` branch of `#if canImport(FoundationEssentials)`.
    static func fullFoundationImports(in source: String) -> [Int] {
        let lines = source.components(separatedBy: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        var offending: [Int] = []
        for (index, line) in lines.enumerated() where line == "import Foundation" {
            let guarded =
                index >= 3 && lines[index - 1] == "#else" && lines[index - 2] == "import FoundationEssentials"
                && lines[index - 3] == "#if canImport(FoundationEssentials)"
            if !guarded { offending.append(index + 1) }
        }
        return offending
    }

    @Test("the check finds an unguarded import and accepts the guarded form")
    func checkWorks() {
        #expect(Self.fullFoundationImports(in: "import Crypto\nimport Foundation\nimport NIOCore\n") == [2])
        #expect(
            Self.fullFoundationImports(
                in: "#if canImport(FoundationEssentials)\nimport FoundationEssentials\n#else\nimport Foundation\n#endif\n")
                .isEmpty)
        // A guard on something else does not count.
        #expect(Self.fullFoundationImports(in: "#if os(Linux)\nimport Glibc\n#else\nimport Foundation\n#endif\n") == [4])
    }

    @Test("no agent source imports full Foundation")
    func agentSourcesImportEssentialsOnly() throws {
        var offenders: [String] = []
        var scanned = 0
        for directory in Self.agentSourceDirectories {
            let root = Self.packageRoot.appendingPathComponent(directory)
            guard let walker = FileManager.default.enumerator(at: root, includingPropertiesForKeys: nil) else {
                Issue.record("cannot list \(root.path)")
                continue
            }
            for case let file as URL in walker where file.pathExtension == "swift" {
                scanned += 1
                let source = try String(contentsOf: file, encoding: .utf8)
                for line in Self.fullFoundationImports(in: source) {
                    offenders.append("\(directory)/\(file.path.dropFirst(root.path.count + 1)):\(line)")
                }
            }
        }
        #expect(scanned > 50, "found only \(scanned) sources: is the package root \(Self.packageRoot.path)?")
        #expect(offenders.isEmpty, "import FoundationEssentials (with the canImport guard) instead: \(offenders)")
    }
}
