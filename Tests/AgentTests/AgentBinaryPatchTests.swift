import Foundation
import NK3Common
import NK3Coordinator
import NK3Protocol
import Testing

/// The released-NixOS path: nix/agent-binary.nix (shipped as nk3-agent-binary.nix) patches the prebuilt agent's
/// interpreter and rpath to the node's glibc and GCC runtime. Here its installPhase, read from the evaluated
/// derivation, runs as it is with Debian's patchelf, with the stand-in glibc and gcc-lib outputs being
/// directories that hold COPIES of the libraries the binary needs; the patched binary must then start from
/// those copies alone and answer `--version`.
///
/// The binary is NK3_AGENT_BINARY if set, else .build/release/nk3-agent (scripts/build-agent-release.sh), else
/// the debug build. A debug build links the Swift runtime dynamically, so its Swift libraries are copied into
/// the gcc-lib directory too (a release build with --static-swift-stdlib needs only glibc, libstdc++ and
/// libgcc_s, which is what the derivation's rpath provides on a node).
@Suite("prebuilt agent binary patched for NixOS", .enabled(if: NixEval.enabled && NixEval.agentBinary != nil || NixEval.isCI, "nix-instantiate, nixpkgs lib or a built nk3-agent missing"))
struct AgentBinaryPatchTests {
    static var binary: String? { NixEval.agentBinary }

    static let patchelf: String? = ["/usr/bin/patchelf", "/usr/local/bin/patchelf"]
        .first { FileManager.default.isExecutableFile(atPath: $0) }

    struct Run {
        var status: Int32
        var output: String
    }

    static func run(_ exe: String, _ args: [String], environment: [String: String]) throws -> Run {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        p.environment = environment
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = ((try? SecureFiles.readAll(out.fileHandleForReading.fileDescriptor, path: "pipe")) ?? Data())
        p.waitUntilExit()
        return Run(status: p.terminationStatus, output: String(decoding: data, as: UTF8.self))
    }

    /// `ldd`'s resolved libraries and the interpreter, as (soname, resolved path).
    static func neededLibraries(_ binary: String) throws -> [(String, String)] {
        let r = try run("/usr/bin/ldd", [binary], environment: ["PATH": "/usr/bin:/bin"])
        #expect(r.status == 0, "ldd: \(r.output)")
        var libs: [(String, String)] = []
        for line in r.output.split(separator: "\n") {
            let t = line.trimmingCharacters(in: .whitespaces)
            if t.hasPrefix("linux-vdso") || t.hasPrefix("linux-gate") { continue }
            if let arrow = t.range(of: " => ") {
                let name = String(t[..<arrow.lowerBound])
                let rest = t[arrow.upperBound...].split(separator: " ").first.map(String.init) ?? ""
                #expect(rest.hasPrefix("/"), "ldd cannot resolve \(name): \(t)")
                libs.append((name, rest))
            } else if t.hasPrefix("/") {
                let path = String(t.split(separator: " ")[0])
                libs.append(((path as NSString).lastPathComponent, path))
            }
        }
        return libs
    }

    static func isGlibc(_ soname: String) -> Bool {
        ["ld-linux", "libc.so", "libm.so", "libpthread.so", "libdl.so", "librt.so", "libutil.so", "libresolv.so"]
            .contains { soname.hasPrefix($0) }
    }

    @Test("the derivation's own installPhase, run with Debian's patchelf, yields a binary that starts from copied libraries and answers --version")
    func patchedBinaryRuns() throws {
        _ = try NixEval.requireTools()
        let binary = try #require(Self.binary, "no nk3-agent binary: build it first (swift build)")
        let patchelf = try #require(Self.patchelf, "patchelf is not installed (apt-get install patchelf; .ci/run does)")
        let fm = FileManager.default
        let root = fm.temporaryDirectory.appendingPathComponent("nk3-patch-\(UUID().uuidString)")
        try fm.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? fm.removeItem(at: root) }

        // The stand-in packages' outPaths are directories under `root`; fill glibc and gcc-lib with copies.
        for dir in ["glibc/lib", "gcc-lib/lib"] {
            try fm.createDirectory(at: root.appendingPathComponent(dir), withIntermediateDirectories: true)
        }
        let libs = try Self.neededLibraries(binary)
        #expect(libs.contains { $0.0.hasPrefix("libc.so") })
        for (soname, path) in libs {
            let dest = root.appendingPathComponent(Self.isGlibc(soname) ? "glibc/lib" : "gcc-lib/lib")
                .appendingPathComponent(soname)
            try fm.copyItem(atPath: URL(fileURLWithPath: path).resolvingSymlinksInPath().path, toPath: dest.path)
        }

        // The generated nk3-agent.nix, pointing at this binary, evaluated with root as the stand-ins' prefix.
        let node = root.appendingPathComponent("etc-nixos")
        try fm.createDirectory(at: node, withIntermediateDirectories: true)
        let nk3AgentNix = AgentNix.render(
            nodeName: "n1", port: 7443, signingPublicKeys: [Data(repeating: 7, count: 32).base64EncodedString()],
            confirmTimeoutSeconds: 600, binary: AgentNix.Binary(path: binary))
        try nk3AgentNix.write(to: node.appendingPathComponent(BundleFile.agent), atomically: true, encoding: .utf8)
        try NixAgentModule.source.write(
            to: node.appendingPathComponent(BundleFile.agentModule), atomically: true, encoding: .utf8)
        try NixAgentModule.binaryDerivation.write(
            to: node.appendingPathComponent(BundleFile.agentBinary), atomically: true, encoding: .utf8)
        let host = node.appendingPathComponent("host.nix")
        try "{ ... }: { boot.loader.grub.devices = [ \"/dev/sda\" ]; system.stateVersion = \"24.05\"; }\n"
            .write(to: host, atomically: true, encoding: .utf8)
        let out = try NixEval.evalNode(
            modules: [node.appendingPathComponent(BundleFile.agent).path, host.path], root: root.path)
        #expect(out.status == 0, "\(out.stderr)")
        let evaluated = try JSONDecoder().decode(EvaluatedNode.self, from: Data(out.stdout.utf8))
        let recipe = try #require(evaluated.packageRecipe)
        #expect(recipe.out == root.appendingPathComponent("nk3-agent").path)

        // Run exactly that installPhase (runHook is stdenv's; its hooks are empty here).
        let script = "set -euo pipefail\nrunHook() { :; }\n" + recipe.installPhase
        let phase = try Self.run(
            "/bin/bash", ["-c", script],
            environment: ["PATH": "\((patchelf as NSString).deletingLastPathComponent):/usr/bin:/bin", "src": binary,
                "out": recipe.out])
        #expect(phase.status == 0, "installPhase failed: \(phase.output)")
        let patched = recipe.out + "/bin/nk3-agent"

        let interp = try Self.run(patchelf, ["--print-interpreter", patched], environment: [:])
        let interpreter = root.path + "/glibc/lib/" + (libs.first { $0.0.hasPrefix("ld-linux") }?.0 ?? "?")
        #expect(interp.output.trimmingCharacters(in: .whitespacesAndNewlines) == interpreter)
        let rpath = try Self.run(patchelf, ["--print-rpath", patched], environment: [:])
        #expect(rpath.output.trimmingCharacters(in: .whitespacesAndNewlines)
            == "\(root.path)/gcc-lib/lib:\(root.path)/glibc/lib")

        // Every library the loader picks comes from the copies (no LD_LIBRARY_PATH, no system paths).
        let trace = try Self.run(patched, [], environment: ["LD_TRACE_LOADED_OBJECTS": "1"])
        #expect(trace.status == 0, "\(trace.output)")
        for line in trace.output.split(separator: "\n") where line.contains(" => ") {
            #expect(line.contains(root.path), "loaded from outside the copies: \(line)")
        }

        let version = try Self.run(patched, ["--version"], environment: ["PATH": "/usr/bin:/bin"])
        #expect(version.status == 0, "\(version.output)")
        #expect(version.output.trimmingCharacters(in: .whitespacesAndNewlines) == NK3Wire.softwareVersion)
    }
}
