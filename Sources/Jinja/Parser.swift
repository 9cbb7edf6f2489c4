/// Jinja2's parser (`jinja2/parser.py` 3.1): tokens to statement and expression nodes, with the same grammar and
/// precedence (condexpr < or < and < not < compare < +,- < ~ < *,/,//,% < ** < unary < postfix/filters/tests).
struct Parser {
    let tokens: [Token]
    let file: String
    var pos = 0
    var depth = 0
    var endTagStack: [[String]] = []
    static let maxDepth = 120

    init(tokens: [Token], file: String) {
        self.tokens = tokens
        self.file = file
    }

    var current: Token { tokens[pos] }
    func look(_ n: Int = 1) -> Token { tokens[min(pos + n, tokens.count - 1)] }

    mutating func advance() -> Token {
        let t = tokens[pos]
        if pos < tokens.count - 1 { pos += 1 }
        return t
    }

    func fail(_ message: String, _ token: Token? = nil) -> JinjaError {
        let t = token ?? current
        return JinjaError(.syntax, message, file: file, line: t.location.line, column: t.location.column)
    }

    func isName(_ n: String, _ t: Token? = nil) -> Bool {
        if case .name(let v) = (t ?? current).kind { return v == n }
        return false
    }

    func isOp(_ o: String, _ t: Token? = nil) -> Bool {
        if case .op(let v) = (t ?? current).kind { return v == o }
        return false
    }

    mutating func skipName(_ n: String) -> Bool {
        if isName(n) {
            _ = advance()
            return true
        }
        return false
    }

    mutating func skipOp(_ o: String) -> Bool {
        if isOp(o) {
            _ = advance()
            return true
        }
        return false
    }

    func unexpected(expected: String) -> JinjaError {
        if case .eof = current.kind { return fail("unexpected end of template, expected '\(expected)'.") }
        return fail("expected token '\(expected)', got '\(current.describe)'")
    }

    mutating func expectOp(_ o: String) throws(JinjaError) {
        guard skipOp(o) else { throw unexpected(expected: o) }
    }

    mutating func expectName(_ n: String? = nil) throws(JinjaError) -> String {
        if case .name(let v) = current.kind, n == nil || v == n {
            _ = advance()
            return v
        }
        throw unexpected(expected: n ?? "name")
    }

    mutating func expectBlockEnd() throws(JinjaError) {
        guard case .blockEnd = current.kind else { throw unexpected(expected: "end of statement block") }
        _ = advance()
    }

    mutating func enter() throws(JinjaError) {
        depth += 1
        if depth > Self.maxDepth {
            var e = fail(
                "nesting deeper than \(Self.maxDepth) levels (Jinja2 allows more; nk3's engine stops here so that a "
                    + "template cannot exhaust the stack)")
            e.kind = .unsupported
            throw e
        }
    }

    // MARK: - Template structure

    /// The whole template.
    mutating func parse() throws(JinjaError) -> [Node] {
        let body = try subparse(endTags: nil)
        return body
    }

    /// Nodes up to one of `endTags` (left as the current token after its `{%`).
    mutating func subparse(endTags: [String]?) throws(JinjaError) -> [Node] {
        var body: [Node] = []
        if let endTags { endTagStack.append(endTags) }
        defer { if endTags != nil { endTagStack.removeLast() } }
        while true {
            switch current.kind {
            case .eof:
                return body
            case .data(let s):
                body.append(.text(s))
                _ = advance()
            case .variableBegin:
                _ = advance()
                body.append(.output(try parseTuple()))
                guard case .variableEnd = current.kind else { throw unexpected(expected: "end of print statement") }
                _ = advance()
            case .blockBegin:
                _ = advance()
                if let endTags, case .name(let n) = current.kind, endTags.contains(n) { return body }
                body.append(contentsOf: try parseStatement())
                try expectBlockEnd()
            default:
                throw fail("unexpected '\(current.describe)'")
            }
        }
    }

    /// `parse_statements`: an optional colon, the block end, the body up to `endTags`.
    mutating func statements(_ endTags: [String], dropNeedle: Bool = false) throws(JinjaError) -> [Node] {
        _ = skipOp(":")
        try expectBlockEnd()
        try enter()
        defer { depth -= 1 }
        let body = try subparse(endTags: endTags)
        if case .eof = current.kind {
            let expected = endTags.map { "'\($0)'" }.joined(separator: " or ")
            throw fail("Unexpected end of template. Jinja was looking for the following tags: \(expected).")
        }
        if dropNeedle { _ = advance() }
        return body
    }

    mutating func parseStatement() throws(JinjaError) -> [Node] {
        guard case .name(let tag) = current.kind else {
            throw fail("tag name expected")
        }
        let loc = current.location
        switch tag {
        case "if": return [try parseIf()]
        case "for": return [try parseFor()]
        case "set": return [try parseSet()]
        case "macro": return [try parseMacro()]
        case "call": return [try parseCallBlock()]
        case "with": return [try parseWith()]
        case "filter":
            _ = advance()
            let filter = try parseFilter(nil, startInline: true)!
            return [.filterBlock(filter, body: try statements(["endfilter"], dropNeedle: true))]
        case "include": return [try parseInclude()]
        case "import": return [try parseImport()]
        case "from": return [try parseFromImport()]
        case "print":
            _ = advance()
            var out: [Node] = []
            while true {
                if case .blockEnd = current.kind { break }
                if !out.isEmpty { try expectOp(",") }
                out.append(.output(try parseExpression()))
            }
            return out
        case "block", "extends", "autoescape":
            var e = fail(
                "the '\(tag)' tag is not supported by nk3's engine: template inheritance and autoescape blocks are "
                    + "not implemented; use include/import and macros")
            e.kind = .unsupported
            throw e
        default:
            if let inner = endTagStack.last {
                let wanted = inner.map { "'\($0)'" }.joined(separator: " or ")
                throw fail("Encountered unknown tag '\(tag)'. Jinja was looking for the following tags: \(wanted).")
            }
            _ = loc
            throw fail("Encountered unknown tag '\(tag)'.")
        }
    }

    mutating func parseIf() throws(JinjaError) -> Node {
        _ = advance()
        var branches: [(Expr, [Node])] = []
        var otherwise: [Node]?
        while true {
            let test = try parseTuple(withCondExpr: false)
            let body = try statements(["elif", "else", "endif"])
            branches.append((test, body))
            let t = advance()
            if isName("elif", t) { continue }
            if isName("else", t) { otherwise = try statements(["endif"], dropNeedle: true) }
            break
        }
        return .ifChain(branches, otherwise: otherwise)
    }

    mutating func parseFor() throws(JinjaError) -> Node {
        let loc = advance().location
        let target = try parseAssignTarget(extraEnd: ["in"])
        _ = try expectName("in")
        let iterable = try parseTuple(withCondExpr: false, extraEnd: ["recursive"])
        var condition: Expr?
        if skipName("if") { condition = try parseExpression() }
        let recursive = skipName("recursive")
        let body = try statements(["endfor", "else"])
        var otherwise: [Node]?
        if isName("else", advance()) { otherwise = try statements(["endfor"], dropNeedle: true) }
        return .forLoop(
            ForLoop(
                target: target, iterable: iterable, condition: condition, body: body, otherwise: otherwise,
                recursive: recursive, location: loc))
    }

    mutating func parseSet() throws(JinjaError) -> Node {
        let loc = advance().location
        let target = try parseAssignTarget(withNamespace: true)
        if skipOp("=") { return .set(target, try parseTuple(), loc) }
        let filter = try parseFilter(nil)
        return .setBlock(target, filter: filter, body: try statements(["endset"], dropNeedle: true), loc)
    }

    mutating func parseSignature() throws(JinjaError) -> Parameters {
        var p = Parameters()
        try expectOp("(")
        var sawDefault = false
        while !isOp(")") {
            if !p.names.isEmpty { try expectOp(",") }
            let name = try expectName()
            if skipOp("=") {
                p.names.append((name, try parseExpression()))
                sawDefault = true
            } else {
                if sawDefault { throw fail("non-default argument follows default argument") }
                p.names.append((name, nil))
            }
        }
        try expectOp(")")
        return p
    }

    mutating func parseMacro() throws(JinjaError) -> Node {
        let loc = advance().location
        let name = try expectName()
        let params = try parseSignature()
        let body = try statements(["endmacro"], dropNeedle: true)
        var names = Set<String>()
        NameScan.names(in: body, into: &names)
        for (_, d) in params.names { if let d { NameScan.names(in: d, into: &names) } }
        return .macro(
            MacroDef(
                name: name, parameters: params, body: body, usesVarargs: names.contains("varargs"),
                usesKwargs: names.contains("kwargs"), usesCaller: names.contains("caller"), location: loc))
    }

    mutating func parseCallBlock() throws(JinjaError) -> Node {
        let loc = advance().location
        let params = isOp("(") ? try parseSignature() : Parameters()
        let call = try parseExpression()
        guard case .call = call else { throw fail("expected call") }
        return .callBlock(call: call, parameters: params, body: try statements(["endcall"], dropNeedle: true), loc)
    }

    mutating func parseWith() throws(JinjaError) -> Node {
        _ = advance()
        var pairs: [(Target, Expr)] = []
        while true {
            if case .blockEnd = current.kind { break }
            if !pairs.isEmpty { try expectOp(",") }
            let target = try parseAssignTarget()
            try expectOp("=")
            pairs.append((target, try parseExpression()))
        }
        return .with(pairs, body: try statements(["endwith"], dropNeedle: true))
    }

    mutating func importContext(_ defaultValue: Bool) -> Bool {
        if isName("with") || isName("without"), isName("context", look()) {
            let with = isName("with")
            _ = advance()
            _ = advance()
            return with
        }
        return defaultValue
    }

    mutating func parseInclude() throws(JinjaError) -> Node {
        let loc = advance().location
        let template = try parseExpression()
        var ignore = false
        if isName("ignore"), isName("missing", look()) {
            _ = advance()
            _ = advance()
            ignore = true
        }
        return .include(template, ignoreMissing: ignore, withContext: importContext(true), loc)
    }

    mutating func parseImport() throws(JinjaError) -> Node {
        let loc = advance().location
        let template = try parseExpression()
        _ = try expectName("as")
        let alias = try expectName()
        return .importModule(template, alias: alias, withContext: importContext(false), loc)
    }

    mutating func parseFromImport() throws(JinjaError) -> Node {
        let loc = advance().location
        let template = try parseExpression()
        _ = try expectName("import")
        var names: [(String, String)] = []
        var withContext = false
        func contextClause(_ p: inout Parser) -> Bool {
            if p.isName("with") || p.isName("without"), p.isName("context", p.look()) {
                withContext = p.isName("with")
                _ = p.advance()
                _ = p.advance()
                return true
            }
            return false
        }
        while true {
            if !names.isEmpty { try expectOp(",") }
            if case .name = current.kind {
                if contextClause(&self) { break }
                let nameToken = current
                let name = try expectName()
                if name.hasPrefix("_") {
                    throw fail("names starting with an underline can not be imported", nameToken)
                }
                names.append((name, skipName("as") ? try expectName() : name))
                if contextClause(&self) || !isOp(",") { break }
            } else {
                _ = try expectName()
            }
        }
        return .fromImport(template, names: names, withContext: withContext, loc)
    }

    // MARK: - Assignment targets

    mutating func parseAssignTarget(extraEnd: [String] = [], withNamespace: Bool = false) throws(JinjaError) -> Target {
        let start = current
        let expr = try parseTuple(simplified: true, extraEnd: extraEnd, withNamespace: withNamespace)
        return try target(expr, start)
    }

    func target(_ e: Expr, _ start: Token) throws(JinjaError) -> Target {
        switch e {
        case .name(let n, _): return .name(n)
        case .getattr(.name(let n, _), let attr, _): return .attribute(n, attr)
        case .tuple(let items, _):
            var out: [Target] = []
            for i in items { out.append(try target(i, start)) }
            return .tuple(out)
        case .literal: throw fail("can't assign to 'const'", start)
        default: throw fail("can't assign to expression", start)
        }
    }
}

/// Names an AST mentions (for macros: whether `varargs`, `kwargs`, `caller` are used).
enum NameScan {
    static func names(in nodes: [Node], into set: inout Set<String>) {
        for n in nodes { names(in: n, into: &set) }
    }

    static func names(in node: Node, into set: inout Set<String>) {
        switch node {
        case .text: break
        case .output(let e): names(in: e, into: &set)
        case .ifChain(let branches, let otherwise):
            for (t, b) in branches {
                names(in: t, into: &set)
                names(in: b, into: &set)
            }
            if let otherwise { names(in: otherwise, into: &set) }
        case .forLoop(let f):
            names(in: f.iterable, into: &set)
            if let c = f.condition { names(in: c, into: &set) }
            names(in: f.body, into: &set)
            if let o = f.otherwise { names(in: o, into: &set) }
        case .set(_, let e, _): names(in: e, into: &set)
        case .setBlock(_, let f, let body, _):
            if let f { names(in: f, into: &set) }
            names(in: body, into: &set)
        case .macro: break  // a nested macro has its own varargs/kwargs/caller
        case .callBlock(let call, let params, let body, _):
            names(in: call, into: &set)
            for (_, d) in params.names { if let d { names(in: d, into: &set) } }
            _ = body  // the call block's body is the caller's own macro
        case .with(let pairs, let body):
            for (_, e) in pairs { names(in: e, into: &set) }
            names(in: body, into: &set)
        case .filterBlock(let f, let body):
            names(in: f, into: &set)
            names(in: body, into: &set)
        case .include(let e, _, _, _), .importModule(let e, _, _, _), .fromImport(let e, _, _, _):
            names(in: e, into: &set)
        }
    }

    static func names(in args: Arguments, into set: inout Set<String>) {
        for a in args.positional { names(in: a, into: &set) }
        for (_, a) in args.keywords { names(in: a, into: &set) }
        if let a = args.starArgs { names(in: a, into: &set) }
        if let a = args.starKwargs { names(in: a, into: &set) }
    }

    static func names(in e: Expr, into set: inout Set<String>) {
        switch e {
        case .literal: break
        case .name(let n, _): set.insert(n)
        case .list(let items, _), .tuple(let items, _), .concat(let items, _):
            for i in items { names(in: i, into: &set) }
        case .dict(let pairs, _):
            for (k, v) in pairs {
                names(in: k, into: &set)
                names(in: v, into: &set)
            }
        case .getattr(let b, _, _), .not(let b, _), .neg(let b, _), .pos(let b, _): names(in: b, into: &set)
        case .getitem(let a, let b, _), .binary(_, let a, let b, _), .and(let a, let b, _), .or(let a, let b, _):
            names(in: a, into: &set)
            names(in: b, into: &set)
        case .slice(let a, let b, let c, _):
            for x in [a, b, c] { if let x { names(in: x, into: &set) } }
        case .call(let f, let args, _):
            names(in: f, into: &set)
            names(in: args, into: &set)
        case .filter(let b, _, let args, _):
            if let b { names(in: b, into: &set) }
            names(in: args, into: &set)
        case .test(let b, _, let args, _):
            names(in: b, into: &set)
            names(in: args, into: &set)
        case .compare(let a, let ops, _):
            names(in: a, into: &set)
            for (_, o) in ops { names(in: o, into: &set) }
        case .condition(let t, let a, let b, _):
            names(in: t, into: &set)
            names(in: a, into: &set)
            if let b { names(in: b, into: &set) }
        }
    }
}
