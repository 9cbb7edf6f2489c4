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
            return .block(value: "\(printTag) \(mapLoop(body))", at: token.sourceMap, whitespace: ws)
        case .block:
            return .block(value: mapLoop(token.contents), at: token.sourceMap, whitespace: token.whitespace ?? .unspecified)
        default:
            return token
        }
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
