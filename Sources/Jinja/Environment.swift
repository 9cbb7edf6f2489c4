import Foundation

/// Where `{% include %}` and `{% import %}` find templates.
public protocol TemplateLoader: Sendable {
    /// The source of the template `name` and the file name to report in errors, or nil if there is none.
    func load(_ name: String) throws(JinjaError) -> (source: String, file: String)?
}

/// Loads templates from one directory, as `jinja2.FileSystemLoader(directory)`: names are `/`-separated paths
/// below it; a name with a `..` segment is not found (Jinja2's `split_template_path`).
public struct DirectoryLoader: TemplateLoader {
    /// The directory.
    public let directory: String

    /// A loader for `directory`.
    public init(directory: String) { self.directory = directory }

    /// The template's text, or nil when the file does not exist.
    public func load(_ name: String) throws(JinjaError) -> (source: String, file: String)? {
        var pieces: [String] = []
        for piece in name.split(separator: "/", omittingEmptySubsequences: false) {
            if piece == ".." { return nil }
            if !piece.isEmpty && piece != "." { pieces.append(String(piece)) }
        }
        let path = ([directory] + pieces).joined(separator: "/")
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue else { return nil }
        do {
            return (try String(contentsOfFile: path, encoding: .utf8), path)
        } catch {
            throw JinjaError(.runtime, "cannot read template '\(name)' at \(path): \(error.localizedDescription)")
        }
    }
}

/// A parsed template in Jinja2's language, rendered as a default `jinja2.Environment()` renders it.
public struct Template: Sendable {
    /// The name used in error messages (usually the file path).
    public let name: String
    let nodes: [Node]

    /// Parses `source`; a syntax error names `name`, the line and the column.
    public init(source: String, name: String) throws(JinjaError) {
        self.name = name
        var lexer = Lexer(source: source, file: name)
        var parser = Parser(tokens: try lexer.tokenize(), file: name)
        nodes = try parser.parse()
        try StaticCheck(file: name).check(nodes, conditional: false)
    }

    /// Renders with the given top-level variables; `loader` resolves `include`/`import` (nil: they fail with
    /// `TemplateNotFound`).
    public func render(_ variables: [String: JinjaValue], loader: (any TemplateLoader)? = nil) throws(JinjaError)
        -> String
    {
        let ev = Evaluator(loader: loader)
        // A macro holds the frame it was defined in, and that frame holds the macro: a reference cycle that would
        // outlive every render (LeakSanitizer found it through the `jinja` fuzz target). The render is over, so
        // nothing can call them any more: empty those frames.
        defer { ev.releaseMacroFrames() }
        return try ev.renderTemplate(self, context: variables)
    }
}

/// Jinja2's compile-time checks: an unknown filter or test is an error (`TemplateAssertionError`) unless it sits
/// inside an `{% if %}` body, where Jinja2 3.x defers the check to run time.
struct StaticCheck {
    let file: String

    func check(_ nodes: [Node], conditional: Bool) throws(JinjaError) {
        for n in nodes { try check(n, conditional: conditional) }
    }

    func check(_ node: Node, conditional: Bool) throws(JinjaError) {
        if conditional { return }
        switch node {
        case .ifChain(let branches, let otherwise):
            for (t, b) in branches {
                try expr(t)
                try check(b, conditional: true)
            }
            if let otherwise { try check(otherwise, conditional: true) }
            return
        case .forLoop(let f):
            try expr(f.iterable)
            if let c = f.condition { try expr(c) }
            try check(f.body, conditional: false)
            if let o = f.otherwise { try check(o, conditional: false) }
            return
        case .macro(let m):
            try check(m.body, conditional: false)
            for (_, d) in m.parameters.names { if let d { try expr(d) } }
            return
        case .callBlock(let call, _, let body, _):
            try expr(call)
            try check(body, conditional: false)
            return
        case .setBlock(_, let f, let body, _):
            if let f { try expr(f) }
            try check(body, conditional: false)
            return
        case .with(let pairs, let body):
            for (_, e) in pairs { try expr(e) }
            try check(body, conditional: false)
            return
        case .filterBlock(let f, let body):
            try expr(f)
            try check(body, conditional: false)
            return
        default: break
        }
        switch node {
        case .output(let e), .set(_, let e, _), .include(let e, _, _, _), .importModule(let e, _, _, _),
            .fromImport(let e, _, _, _):
            try expr(e)
        default: break
        }
    }

    func expr(_ e: Expr) throws(JinjaError) {
        var failure: JinjaError?
        ExprWalk.visit(e) { node in
            guard failure == nil else { return }
            switch node {
            case .filter(_, let name, _, let loc) where Filters.table[name] == nil:
                failure = JinjaError(
                    .assertion, "No filter named '\(name)'.", file: file, line: loc.line,
                    column: loc.column)
            case .test(_, let name, _, let loc) where TestFunctions.table[name] == nil:
                failure = JinjaError(
                    .assertion, "No test named '\(name)'.", file: file, line: loc.line,
                    column: loc.column)
            default: break
            }
        }
        if let failure { throw failure }
    }
}

/// Visits every sub-expression.
enum ExprWalk {
    static func visit(_ e: Expr, _ f: (Expr) -> Void) {
        f(e)
        switch e {
        case .literal, .name: break
        case .list(let items, _), .tuple(let items, _), .concat(let items, _): for i in items { visit(i, f) }
        case .dict(let pairs, _):
            for (k, v) in pairs {
                visit(k, f)
                visit(v, f)
            }
        case .getattr(let b, _, _), .not(let b, _), .neg(let b, _), .pos(let b, _): visit(b, f)
        case .getitem(let a, let b, _), .binary(_, let a, let b, _), .and(let a, let b, _), .or(let a, let b, _):
            visit(a, f)
            visit(b, f)
        case .slice(let a, let b, let c, _): for x in [a, b, c] { if let x { visit(x, f) } }
        case .call(let c, let args, _):
            visit(c, f)
            visitArgs(args, f)
        case .filter(let b, _, let args, _):
            if let b { visit(b, f) }
            visitArgs(args, f)
        case .test(let b, _, let args, _):
            visit(b, f)
            visitArgs(args, f)
        case .compare(let a, let ops, _):
            visit(a, f)
            for (_, o) in ops { visit(o, f) }
        case .condition(let t, let a, let b, _):
            visit(t, f)
            visit(a, f)
            if let b { visit(b, f) }
        }
    }

    static func visitArgs(_ args: Arguments, _ f: (Expr) -> Void) {
        for a in args.positional { visit(a, f) }
        for (_, a) in args.keywords { visit(a, f) }
        if let a = args.starArgs { visit(a, f) }
        if let a = args.starKwargs { visit(a, f) }
    }
}
