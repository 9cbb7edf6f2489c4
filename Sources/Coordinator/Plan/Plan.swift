import Foundation
import NK3Protocol

/// What a node needs: its rendered bundle against what its agent reports as landed.
public struct NodePlan: Sendable, Hashable {
    /// Node name.
    public var node: String
    /// Files that differ, by name (added, removed or modified).
    public var changes: [FileChange]
    /// `ConfigFiles.hash(files:)` of the rendered bundle (what the agent will report once it has landed).
    public var renderedHash: String
    /// `ConfigFiles.hash(files:)` of the landed files.
    public var landedHash: String

    /// Whether the node's files must change.
    public var needsApply: Bool { !changes.isEmpty }

    /// The operator's line(s), as the Python tool printed them: "No action needed on X", or "X modified:"
    /// followed by each file's unified diff (coloured when `color`).
    public func describe(color: Bool) -> String {
        if changes.isEmpty { return "No action needed on \(node)\n" }
        var out = "\(node) modified:\n"
        for c in changes { out += color ? DiffColor.colorize(c.diff) : c.diff }
        return out
    }
}

/// One file's change.
public struct FileChange: Sendable, Hashable {
    /// What happened to the file.
    public enum Kind: String, Sendable, Hashable {
        case added, removed, modified
    }

    /// Bundle file name (`configuration.nix`, ...).
    public var name: String
    /// Added, removed or modified.
    public var kind: Kind
    /// Unified diff, landed → rendered, with headers `--- landed/NAME` / `+++ rendered/NAME`.
    public var diff: String
}

/// Computes per-node plans. Pure: no I/O.
public enum Plan {
    /// Plans for every rendered node, in the order of `order` (nodes not listed follow by name).
    /// `landed` holds each node's landed file contents (`LandedFiles.files`); a node absent from it is treated as
    /// having no nk3 files yet (everything is added).
    public static func compute(
        rendered: [String: [String: String]], landed: [String: [String: String]], order: [String] = []
    ) -> [NodePlan] {
        var names = order.filter { rendered[$0] != nil }
        names += rendered.keys.filter { !names.contains($0) }.sorted()
        return names.map { compute(node: $0, rendered: rendered[$0]!, landed: landed[$0] ?? [:]) }
    }

    /// One node's plan.
    public static func compute(node: String, rendered: [String: String], landed: [String: String]) -> NodePlan {
        var changes: [FileChange] = []
        for name in Set(rendered.keys).union(landed.keys).sorted() {
            let new = rendered[name]
            let old = landed[name]
            guard new != old else { continue }
            let kind: FileChange.Kind = old == nil ? .added : (new == nil ? .removed : .modified)
            let diff = UnifiedDiff.make(
                old: old ?? "", new: new ?? "", oldName: old == nil ? "/dev/null" : "landed/\(name)",
                newName: new == nil ? "/dev/null" : "rendered/\(name)")
            changes.append(FileChange(name: name, kind: kind, diff: diff))
        }
        return NodePlan(
            node: node, changes: changes, renderedHash: ConfigFiles.hash(files: rendered),
            landedHash: ConfigFiles.hash(files: landed))
    }

    /// Whether an agent's reported files already match a rendered bundle (hashes only, no contents needed).
    public static func isLanded(rendered: [String: String], status: AgentStatus) -> Bool {
        ConfigFiles.hash(files: rendered) == status.configHash
            || ConfigFiles.digests(rendered) == status.files
    }
}

/// ANSI colour for diffs: red `-`, green `+`, cyan `@@`, as `git diff` does.
public enum DiffColor {
    static let red = "\u{1B}[31m"
    static let green = "\u{1B}[32m"
    static let cyan = "\u{1B}[36m"
    static let bold = "\u{1B}[1m"
    static let reset = "\u{1B}[0m"

    /// The diff with each line coloured (headers bold).
    public static func colorize(_ diff: String) -> String {
        var out = ""
        for line in diff.split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
            let color: String?
            if line.hasPrefix("--- ") || line.hasPrefix("+++ ") {
                color = bold
            } else if line.hasPrefix("@@") {
                color = cyan
            } else if line.hasPrefix("-") {
                color = red
            } else if line.hasPrefix("+") {
                color = green
            } else {
                color = nil
            }
            out += color.map { "\($0)\(line)\(reset)\n" } ?? "\(line)\n"
        }
        return out
    }

    /// Whether to colour: only on a terminal, and never when `NO_COLOR` is set to a non-empty value
    /// (https://no-color.org).
    public static func shouldColor(isTerminal: Bool, environment: [String: String]) -> Bool {
        guard isTerminal else { return false }
        if let v = environment["NO_COLOR"], !v.isEmpty { return false }
        return true
    }

    /// `shouldColor` for standard output of this process.
    public static func shouldColorStandardOutput() -> Bool {
        shouldColor(isTerminal: isatty(STDOUT_FILENO) == 1, environment: ProcessInfo.processInfo.environment)
    }
}
