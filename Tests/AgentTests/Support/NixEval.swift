import Foundation
import NK3Common
import Testing

/// Runs Debian's `nix-instantiate` on nk3's Nix files with nixpkgs' real `lib` (`../shared/nixpkgs-lib/lib`
/// beside the checkout) and the stand-ins of `nix/tests/stand-ins.nix` (`nix/tests/eval-node.nix`).
///
/// Locally, a machine without nix-instantiate or without that lib skips these tests (the reason is printed);
/// in CI (`CI=true`) they run and fail instead, so a broken CI image cannot turn them green.
enum NixEval {
    /// The repository root (this file is Tests/AgentTests/Support/NixEval.swift).
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// nixpkgs' lib directory: ../shared/nixpkgs-lib/lib relative to the repository root.
    static let libDirectory = repo.deletingLastPathComponent().appendingPathComponent("shared/nixpkgs-lib/lib")

    static let nixInstantiate: String? = ["/usr/bin/nix-instantiate", "/usr/local/bin/nix-instantiate",
        "/run/current-system/sw/bin/nix-instantiate", "/nix/var/nix/profiles/default/bin/nix-instantiate"]
        .first { FileManager.default.isExecutableFile(atPath: $0) }

    static let isCI = ProcessInfo.processInfo.environment["CI"] == "true"

    /// The nk3-agent binary to patch: NK3_AGENT_BINARY, else the release build, else the debug build.
    static let agentBinary: String? = {
        if let b = ProcessInfo.processInfo.environment["NK3_AGENT_BINARY"] { return b }
        return ["release", "debug"].map { repo.appendingPathComponent(".build/\($0)/nk3-agent").path }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    /// Why the tests cannot run here, or nil.
    static let missing: String? = {
        if nixInstantiate == nil { return "nix-instantiate is not installed (Debian: apt-get install nix-bin)" }
        if !FileManager.default.fileExists(atPath: libDirectory.appendingPathComponent("default.nix").path) {
            return "nixpkgs' lib is not at \(libDirectory.path) (../shared/nixpkgs-lib/lib beside the checkout)"
        }
        return nil
    }()

    /// Run the tests when everything is there, and always in CI (where `requireTools` then fails them).
    static var enabled: Bool {
        if let missing, !isCI {
            print("NixEval: skipping (\(missing)); CI=true makes this a failure")
            return false
        }
        return true
    }

    struct Unavailable: Error, CustomStringConvertible {
        var description: String
    }

    /// Throws (failing the test) when the tools are missing; only reached in CI or when they exist.
    static func requireTools() throws -> String {
        if let missing { throw Unavailable(description: "CI=true and \(missing)") }
        return nixInstantiate!
    }

    /// What `nix-instantiate` printed.
    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// `nix-instantiate --eval --strict --json [--readonly-mode] file --arg name expr ...`.
    static func run(file: String, args: [(String, String)], readOnly: Bool = true) throws -> Output {
        let nix = try requireTools()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: nix)
        var arguments = ["--eval", "--strict", "--json"]
        // --readonly-mode: builtins.path computes store paths without writing to /nix/store.
        if readOnly { arguments.append("--readonly-mode") }
        arguments.append(file)
        for (name, expr) in args { arguments += ["--arg", name, expr] }
        p.arguments = arguments
        let out = Pipe()
        // stderr to a file, so that neither pipe can fill up while the other is read.
        let errPath = FileManager.default.temporaryDirectory.appendingPathComponent("nk3-nixeval-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: errPath.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: errPath) }
        p.standardOutput = out
        p.standardError = try FileHandle(forWritingTo: errPath)
        try p.run()
        let o = ((try? SecureFiles.readAll(out.fileHandleForReading.fileDescriptor, path: "pipe")) ?? Data())
        p.waitUntilExit()
        let e = (try? Data(contentsOf: errPath)) ?? Data()
        return Output(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
            stderr: String(decoding: e, as: UTF8.self))
    }

    /// A Nix string literal for a file path.
    static func nixString(_ s: String) -> String {
        "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "$", with: "\\$") + "\""
    }

    /// Evaluates `modules` (absolute .nix paths) with `nix/tests/eval-node.nix`; `root` is where the stand-in
    /// packages' outPaths point.
    static func evalNode(modules: [String], root: String = "/nk3-stand-in") throws -> Output {
        let list = "[ " + modules.map { "(/. + \(nixString($0)))" }.joined(separator: " ") + " ]"
        return try run(
            file: repo.appendingPathComponent("nix/tests/eval-node.nix").path,
            args: [("lib", "import \(libDirectory.path)"), ("modules", list), ("root", nixString(root))])
    }
}

/// The JSON `nix/tests/eval-node.nix` returns.
struct EvaluatedNode: Decodable {
    struct Unit: Decodable {
        var description: String
        var wantedBy: [String]
        var after: [String]
        var restartIfChanged: Bool
        var environment: [String: String]
        var path: [String]
        var serviceConfig: [String: NixValue]
        var unitConfig: [String: NixValue]
    }
    struct Recipe: Decodable {
        var installPhase: String
        var src: String
        var out: String
    }
    var failedAssertions: [String]
    var warnings: [String]
    var enabled: Bool
    var unit: Unit?
    var configJSON: String?
    var firewallTCP: [Int]
    var firewallCommands: String
    var firewallInputRules: String
    var tmpfiles: [String]
    var stateVersion: String?
    var grubDevices: [String]
    /// `boot.loader.grub.default` (nixpkgs applies `toString`).
    var grubDefault: String
    var watchdogRuntime: String?
    var packageRecipe: Recipe?
}

/// A unit setting: a string, number, bool or list of strings.
enum NixValue: Decodable, Equatable {
    case string(String), int(Int), bool(Bool), list([String])

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int.self) { self = .int(i) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else { self = .list(try c.decode([String].self)) }
    }
}
