/// Line-based unified diffs (Myers' O(ND) algorithm), in GNU `diff -u` format: `--- `/`+++ ` headers,
/// `@@ -l,s +l,s @@` hunks with `context` lines of context, `\ No newline at end of file` markers.
public enum UnifiedDiff {
    /// One line of a hunk.
    public enum Line: Sendable, Hashable {
        case context(String)
        case removed(String)
        case added(String)
        /// GNU's `\ No newline at end of file`, after the line it concerns.
        case noNewlineAtEnd
    }

    /// One `@@` hunk. Starts are 1-based; a side with count 0 names the line before the hunk (as GNU does).
    public struct Hunk: Sendable, Hashable {
        public var oldStart: Int
        public var oldCount: Int
        public var newStart: Int
        public var newCount: Int
        public var lines: [Line]

        /// `@@ -12,6 +12,7 @@` (a count of 1 is omitted).
        public var header: String {
            func range(_ start: Int, _ count: Int) -> String { count == 1 ? "\(start)" : "\(start),\(count)" }
            return "@@ -\(range(oldStart, oldCount)) +\(range(newStart, newCount)) @@"
        }
    }

    /// The unified diff from `old` to `new`, or "" when they are equal.
    public static func make(old: String, new: String, context: Int = 3, oldName: String = "", newName: String = "")
        -> String
    {
        let hs = hunks(old: old, new: new, context: context)
        if hs.isEmpty { return "" }
        var out = "--- \(oldName)\n+++ \(newName)\n"
        for h in hs {
            out += h.header + "\n"
            for l in h.lines {
                switch l {
                case .context(let s): out += " \(s)\n"
                case .removed(let s): out += "-\(s)\n"
                case .added(let s): out += "+\(s)\n"
                case .noNewlineAtEnd: out += "\\ No newline at end of file\n"
                }
            }
        }
        return out
    }

    /// The hunks from `old` to `new` (empty when equal).
    public static func hunks(old: String, new: String, context: Int = 3) -> [Hunk] {
        let a = FileLines(old)
        let b = FileLines(new)
        // Compare lines by interned ids; a last line without newline differs from the same text with one.
        var ids: [String: Int] = [:]
        func key(_ f: FileLines, _ i: Int) -> Int {
            let k = f.lines[i] + (i == f.lines.count - 1 && f.missingFinalNewline ? "\u{0}no-eol" : "")
            if let id = ids[k] { return id }
            ids[k] = ids.count
            return ids.count - 1
        }
        let ka = a.lines.indices.map { key(a, $0) }
        let kb = b.lines.indices.map { key(b, $0) }
        let ops = editScript(ka, kb)
        guard ops.contains(where: { $0.kind != .equal }) else { return [] }

        // Group changes whose separating equal run is at most 2*context lines (GNU and difflib both do).
        var hunks: [Hunk] = []
        var i = 0
        while i < ops.count {
            guard let firstChange = ops[i...].firstIndex(where: { $0.kind != .equal }) else { break }
            var lastChange = firstChange
            var j = firstChange
            while j < ops.count {
                if ops[j].kind != .equal {
                    lastChange = j
                    j += 1
                    continue
                }
                let nextChange = ops[j...].firstIndex { $0.kind != .equal }
                if let n = nextChange, n - lastChange - 1 <= 2 * context {
                    j = n
                } else {
                    break
                }
            }
            let start = max(i, firstChange - context)
            let end = min(ops.count - 1, lastChange + context)
            var h = Hunk(oldStart: 0, oldCount: 0, newStart: 0, newCount: 0, lines: [])
            let first = ops[start]
            h.oldStart = first.oldIndex
            h.newStart = first.newIndex
            for op in ops[start...end] {
                switch op.kind {
                case .equal:
                    h.lines.append(.context(a.lines[op.oldIndex]))
                    h.oldCount += 1
                    h.newCount += 1
                    if op.oldIndex == a.lines.count - 1 && a.missingFinalNewline { h.lines.append(.noNewlineAtEnd) }
                case .delete:
                    h.lines.append(.removed(a.lines[op.oldIndex]))
                    h.oldCount += 1
                    if op.oldIndex == a.lines.count - 1 && a.missingFinalNewline { h.lines.append(.noNewlineAtEnd) }
                case .insert:
                    h.lines.append(.added(b.lines[op.newIndex]))
                    h.newCount += 1
                    if op.newIndex == b.lines.count - 1 && b.missingFinalNewline { h.lines.append(.noNewlineAtEnd) }
                }
            }
            // 1-based starts; an empty side names the line before (0-based index of the next line).
            if h.oldCount > 0 { h.oldStart += 1 }
            if h.newCount > 0 { h.newStart += 1 }
            hunks.append(h)
            i = end + 1
        }
        return hunks
    }

    enum OpKind { case equal, delete, insert }

    /// One step of the edit script; `oldIndex`/`newIndex` are the 0-based positions on each side at that step.
    struct Op {
        var kind: OpKind
        var oldIndex: Int
        var newIndex: Int
    }

    /// Myers' shortest edit script (deletions before insertions within a change, as GNU diff prints them).
    static func editScript(_ a: [Int], _ b: [Int]) -> [Op] {
        let n = a.count
        let m = b.count
        let maxD = n + m
        if maxD == 0 { return [] }
        let offset = maxD + 1
        var v = [Int](repeating: 0, count: 2 * maxD + 3)
        var trace: [[Int]] = []
        var found = false
        for d in 0...maxD {
            trace.append(v)
            var k = -d
            while k <= d {
                var x: Int
                if k == -d || (k != d && v[offset + k - 1] < v[offset + k + 1]) {
                    x = v[offset + k + 1]
                } else {
                    x = v[offset + k - 1] + 1
                }
                var y = x - k
                while x < n && y < m && a[x] == b[y] {
                    x += 1
                    y += 1
                }
                v[offset + k] = x
                if x >= n && y >= m {
                    found = true
                    break
                }
                k += 2
            }
            if found { break }
        }
        // Backtrack.
        var ops: [Op] = []
        var x = n
        var y = m
        for d in stride(from: trace.count - 1, through: 0, by: -1) {
            let vd = trace[d]
            let k = x - y
            let prevK: Int
            if k == -d || (k != d && vd[offset + k - 1] < vd[offset + k + 1]) {
                prevK = k + 1
            } else {
                prevK = k - 1
            }
            let prevX = d == 0 ? 0 : vd[offset + prevK]
            let prevY = d == 0 ? 0 : prevX - prevK
            while x > prevX && y > prevY {
                x -= 1
                y -= 1
                ops.append(Op(kind: .equal, oldIndex: x, newIndex: y))
            }
            if d > 0 {
                if x == prevX {
                    y -= 1
                    ops.append(Op(kind: .insert, oldIndex: x, newIndex: y))
                } else {
                    x -= 1
                    ops.append(Op(kind: .delete, oldIndex: x, newIndex: y))
                }
            }
        }
        return ops.reversed()
    }
}

/// A file's lines without their newlines, and whether the last one lacked a newline.
struct FileLines {
    var lines: [String]
    var missingFinalNewline: Bool

    init(_ s: String) {
        if s.isEmpty {
            lines = []
            missingFinalNewline = false
            return
        }
        var parts = s.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if parts.last == "" {
            parts.removeLast()
            missingFinalNewline = false
        } else {
            missingFinalNewline = true
        }
        lines = parts
    }
}
