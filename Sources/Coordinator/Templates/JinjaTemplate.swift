import Foundation
import Stencil

/// A template in the Jinja2 dialect the Python tool used, rendered with Stencil so that its output is byte for
/// byte what Jinja2 3.1 (default `Environment`) renders for the same context. Checked by the fixtures that
/// `scripts/gen-jinja-fixtures.py` renders with real Jinja2.
///
/// What is done to match Jinja2:
/// - one trailing newline of the template is dropped (`keep_trailing_newline=False`), and `\r\n` / `\r` become
///   `\n` (Jinja2's lexer normalises newlines);
/// - `{{ … }}` prints Python's `str()`: booleans `True`/`False`, YAML null `None`, lists and maps as Python
///   reprs (`['a', 'b']`, `{'k': 1}`), floats as Python writes them; a missing key prints "" (Undefined);
/// - whitespace around tags is kept (no trim_blocks/lstrip_blocks); `{%-`, `-%}`, `{{-`, `-}}` strip whitespace
///   including newlines on that side;
/// - `loop.index`, `loop.index0`, `loop.first`, `loop.last`, `loop.length` map to Stencil's `forloop`;
/// - iterating a map yields its keys in written order; `{% if map %}` is false for an empty map.
///
/// Known differences (documented in `docs` of `BundleRenderer`): filter arguments use Stencil's syntax
/// (`x|default:"y"`, not `x|default("y")`); no method calls (`d.items()`), tests (`is defined`), `{% set %}`,
/// macros or `{% for … %}{% else %}` (Stencil spells it `{% empty %}`); negative numbers test false in
/// `{% if %}` (Jinja2: true); a dotted lookup through a missing key prints "" where Jinja2 raises.
public struct JinjaTemplate: Sendable {
    /// The template text as given.
    public let source: String
    /// Name used in error messages (file path).
    public let name: String

    /// Makes a template; `render` parses it (errors then name the template).
    public init(source: String, name: String) {
        self.source = source
        self.name = name
    }

    /// Renders with the given top-level variables (values: `String`, `Int`, `Double`, `Bool`, `[Any]`, or
    /// `InventoryValue` for anything from the inventory).
    public func render(_ variables: [String: Any]) throws(TemplateError) -> String {
        var text = source.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
        if text.hasSuffix("\n") { text.removeLast() }
        let environment = Environment(extensions: [Self.makeExtension()])
        let template = Template(templateString: text, environment: environment, name: name)
        let trims = Self.trimBehaviours()
        let tokens = template.tokens.map { Self.rewrite($0, trims: trims) }
        do {
            let context = Context(dictionary: variables.mapValues(Self.contextValue), environment: environment)
            let parser = TokenParser(tokens: tokens, environment: environment)
            let nodes = try parser.parse()
            return try renderNodes(nodes, context)
        } catch {
            throw TemplateError(template: name, underlying: error, source: text)
        }
    }

    static func contextValue(_ v: Any) -> Any {
        if let iv = v as? InventoryValue { return PythonValues.context(iv) }
        if let list = v as? [InventoryValue] { return list.map(PythonValues.context) }
        return v
    }

    static let printTag = "nk3_print"

    /// `{{ x }}` becomes a block tag that prints Python's `str()`, keeping Jinja2's `-` whitespace control;
    /// `loop.*` becomes `forloop.*` in expressions.
    static func rewrite(_ token: Token, trims: [String: WhitespaceBehaviour]) -> Token {
        switch token.kind {
        case .variable:
            var body = token.contents
            var left = false
            var right = false
            if body.hasPrefix("- ") || body == "-" {
                left = true
                body = String(body.dropFirst()).trimmingCharacters(in: .whitespaces)
            }
            if body.hasSuffix(" -") {
                right = true
                body = String(body.dropLast()).trimmingCharacters(in: .whitespaces)
            }
            let ws = trims["\(left)\(right)"] ?? .unspecified
            return .block(value: "\(printTag) \(filterCalls(mapLoop(body)))", at: token.sourceMap, whitespace: ws)
        case .block:
            return .block(
                value: filterCalls(mapLoop(token.contents)), at: token.sourceMap,
                whitespace: token.whitespace ?? .unspecified)
        default:
            return token
        }
    }

    /// Jinja2's filter calls `x|f("a", 1)` become Stencil's `x|f:"a",1` (outside string literals).
    static func filterCalls(_ s: String) -> String {
        guard s.contains("|"), s.contains("(") else { return s }
        let c = Array(s)
        var out = ""
        var quote: Character?
        var i = 0
        while i < c.count {
            let ch = c[i]
            if let q = quote {
                out.append(ch)
                if ch == q { quote = nil }
                i += 1
                continue
            }
            if ch == "\"" || ch == "'" {
                quote = ch
                out.append(ch)
                i += 1
                continue
            }
            if ch == "|" {
                // |name( ... )
                var j = i + 1
                while j < c.count, c[j] == " " { j += 1 }
                let nameStart = j
                while j < c.count, c[j].isLetter || c[j].isNumber || c[j] == "_" { j += 1 }
                if j > nameStart, j < c.count, c[j] == "(" {
                    // find the matching ')', skipping string literals
                    var k = j + 1
                    var q: Character?
                    var depth = 1
                    while k < c.count {
                        let x = c[k]
                        if let qq = q {
                            if x == qq { q = nil }
                        } else if x == "\"" || x == "'" {
                            q = x
                        } else if x == "(" {
                            depth += 1
                        } else if x == ")" {
                            depth -= 1
                            if depth == 0 { break }
                        }
                        k += 1
                    }
                    if k < c.count {
                        let name = String(c[nameStart..<j])
                        let args = splitArgs(String(c[(j + 1)..<k]))
                        out += "|" + name + (args.isEmpty ? "" : ":" + args.joined(separator: ","))
                        i = k + 1
                        continue
                    }
                }
            }
            out.append(ch)
            i += 1
        }
        return out
    }

    /// Splits call arguments on top-level commas, trimming spaces.
    static func splitArgs(_ s: String) -> [String] {
        var parts: [String] = []
        var cur = ""
        var q: Character?
        for ch in s {
            if let qq = q {
                cur.append(ch)
                if ch == qq { q = nil }
            } else if ch == "\"" || ch == "'" {
                q = ch
                cur.append(ch)
            } else if ch == "," {
                parts.append(cur.trimmingCharacters(in: .whitespaces))
                cur = ""
            } else {
                cur.append(ch)
            }
        }
        let last = cur.trimmingCharacters(in: .whitespaces)
        if !last.isEmpty || !parts.isEmpty { parts.append(last) }
        return parts
    }

    /// Stencil's `WhitespaceBehaviour` has no public initialiser: take the four combinations from its lexer.
    static func trimBehaviours() -> [String: WhitespaceBehaviour] {
        var out: [String: WhitespaceBehaviour] = [:]
        for (key, text) in [
            ("falsefalse", "{% x %}"), ("truefalse", "{%- x %}"), ("falsetrue", "{% x -%}"), ("truetrue", "{%- x -%}"),
        ] {
            out[key] = Template(templateString: text).tokens.first?.whitespace ?? .unspecified
        }
        return out
    }

    static let loopNames = [
        "index0": "counter0", "index": "counter", "first": "first", "last": "last", "length": "length",
    ]

    /// Rewrites `loop.NAME` outside string literals.
    static func mapLoop(_ s: String) -> String {
        guard s.contains("loop.") else { return s }
        var out = ""
        var quote: Character?
        var i = s.startIndex
        while i < s.endIndex {
            let c = s[i]
            if let q = quote {
                out.append(c)
                if c == q { quote = nil }
                i = s.index(after: i)
                continue
            }
            if c == "\"" || c == "'" {
                quote = c
                out.append(c)
                i = s.index(after: i)
                continue
            }
            let rest = s[i...]
            let prevIsIdent = i > s.startIndex && { let p = s[s.index(before: i)]; return p.isLetter || p.isNumber || p == "_" || p == "." }()
            if !prevIsIdent && rest.hasPrefix("loop.") {
                let after = rest.dropFirst(5)
                let name = after.prefix { $0.isLetter || $0.isNumber || $0 == "_" }
                if let mapped = loopNames[String(name)] {
                    out += "forloop.\(mapped)"
                    i = s.index(i, offsetBy: 5 + name.count)
                    continue
                }
            }
            out.append(c)
            i = s.index(after: i)
        }
        return out
    }

    static func makeExtension() -> Extension {
        let ext = Extension()
        // Jinja2's names and semantics for the common filters (registered first, so they win over Stencil's).
        let str = PythonValues.str
        ext.registerFilter("lower") { str($0).lowercased() }
        ext.registerFilter("upper") { str($0).uppercased() }
        ext.registerFilter("capitalize") { v in
            let s = str(v)
            return s.prefix(1).uppercased() + s.dropFirst().lowercased()
        }
        ext.registerFilter("trim") { str($0).trimmingCharacters(in: .whitespacesAndNewlines) }
        ext.registerFilter("string") { str($0) }
        ext.registerFilter("length") { v in
            switch v {
            case let a as [Any]: a.count
            case let s as String: s.count
            case let d as [String: Any]: d.count
            default: 0
            }
        }
        ext.registerFilter("join") { (v: Any?, args: [Any?]) in
            let sep = args.first.map { str($0) } ?? ""
            guard let a = v as? [Any] else { return str(v) }
            return a.map { str($0) }.joined(separator: sep)
        }
        ext.registerFilter("replace") { (v: Any?, args: [Any?]) in
            guard args.count >= 2 else { throw TemplateSyntaxError("replace needs two arguments: old and new") }
            return str(v).replacingOccurrences(of: str(args[0]), with: str(args[1]))
        }
        ext.registerTag(printTag) { parser, token in
            let body = String(token.contents.dropFirst(printTag.count + 1))
            let parts = Array(token.components.dropFirst())
            if parts.count > 2, parts[1] == "if" {
                let rest = Array(parts.dropFirst(2))
                let elseAt = rest.firstIndex(of: "else")
                let condition = try parser.compileExpression(
                    components: elseAt.map { Array(rest[..<$0]) } ?? rest, token: token)
                let otherwise = try elseAt.map {
                    try parser.compileResolvable(rest[($0 + 1)...].joined(separator: " "), containedIn: token)
                }
                return PrintNode(
                    value: try parser.compileResolvable(parts[0], containedIn: token), condition: condition,
                    otherwise: otherwise, token: token)
            }
            return PrintNode(
                value: try parser.compileResolvable(body, containedIn: token), condition: nil, otherwise: nil,
                token: token)
        }
        return ext
    }
}

/// Prints Python's `str()` of an expression (see `JinjaTemplate`).
final class PrintNode: NodeType {
    let value: Resolvable
    let condition: Stencil.Expression?
    let otherwise: Resolvable?
    let token: Token?

    init(value: Resolvable, condition: Stencil.Expression?, otherwise: Resolvable?, token: Token) {
        self.value = value
        self.condition = condition
        self.otherwise = otherwise
        self.token = token
    }

    func render(_ context: Context) throws -> String {
        var chosen: Resolvable? = value
        if let condition, try !condition.evaluate(context: context) { chosen = otherwise }
        guard let chosen else { return "" }
        let result = try context.push(dictionary: [printingMarker: true]) { try chosen.resolve(context) }
        return PythonValues.str(result)
    }
}

/// A template that does not parse or render.
public struct TemplateError: Error, Sendable, CustomStringConvertible {
    /// The template's name (file path).
    public var template: String
    /// Line in the template (1-based; 0 when unknown).
    public var line: Int
    /// What went wrong.
    public var message: String

    init(template: String, underlying: Error, source: String) {
        self.template = template
        if let e = underlying as? TemplateSyntaxError {
            self.message = e.reason
            self.line = Int(e.token?.sourceMap.location.lineNumber ?? 0)
        } else {
            self.message = "\(underlying)"
            self.line = 0
        }
    }

    /// Makes an error.
    public init(template: String, line: Int, message: String) {
        self.template = template
        self.line = line
        self.message = message
    }

    /// `template:line: message`.
    public var description: String { "\(template):\(line): template error: \(message)" }
}
