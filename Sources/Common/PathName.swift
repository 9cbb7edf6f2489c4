/// Path-name arithmetic on strings, as `NSString`'s `lastPathComponent`, `deletingLastPathComponent` and
/// `appendingPathComponent` do it (FoundationEssentials has no `NSString`). No file system access.
public enum PathName {
    /// `path` without trailing slashes (a lone "/" stays).
    private static func trimmed(_ path: String) -> Substring {
        var p = Substring(path)
        while p.count > 1, p.hasSuffix("/") { p = p.dropLast() }
        return p
    }

    /// The last component: `/a/b/` → `b`, `/` → `/`, `a` → `a`, `` → ``.
    public static func lastComponent(_ path: String) -> String {
        let p = trimmed(path)
        if p == "/" { return "/" }
        guard let slash = p.lastIndex(of: "/") else { return String(p) }
        return String(p[p.index(after: slash)...])
    }

    /// Everything before the last component: `/a/b` → `/a`, `/a` → `/`, `a` → ``, `/` → `/`.
    public static func deletingLastComponent(_ path: String) -> String {
        let p = trimmed(path)
        if p == "/" { return "/" }
        guard let slash = p.lastIndex(of: "/") else { return "" }
        var dir = p[..<slash]
        while dir.hasSuffix("/") { dir = dir.dropLast() }
        return dir.isEmpty ? "/" : String(dir)
    }

    /// `component` appended with exactly one slash between: `a` + `b` → `a/b`, `a/` + `b` → `a/b`, `` + `b` → `b`.
    public static func appending(_ component: String, to path: String) -> String {
        if path.isEmpty { return component }
        let p = trimmed(path)
        return p == "/" ? "/" + component : p + "/" + component
    }
}
