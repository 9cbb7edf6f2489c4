import Foundation
import NK3Jinja

/// A configuration template in Jinja2's language, rendered by nk3's own Jinja2 engine (`NK3Jinja`) so that its
/// output is byte for byte what Jinja2 3.1 with a default `Environment()` renders, as the Python tool did:
/// `keep_trailing_newline=False`, no `trim_blocks`/`lstrip_blocks`, no autoescape, `jinja2.Undefined`.
/// `Tests/JinjaTests` (230 cases) and `Tests/CoordinatorTests/TemplateTests` check it against outputs that
/// `scripts/gen-jinja-fixtures.py` rendered with real Jinja2. What the engine does not implement (template
/// inheritance, a few filters) is an error naming it, never a different output.
///
/// `{% include %}` and `{% import %}` load files from the template's own directory.
public struct JinjaTemplate: Sendable {
    /// The template text as given.
    public let source: String
    /// Name used in error messages (file path).
    public let name: String
    /// Where `include`/`import` find templates (nil: they fail with `TemplateNotFound`).
    public let directory: String?
    let parsed: Result<NK3Jinja.Template, JinjaError>

    /// Makes a template; a syntax error is reported by `render` (and by `check`), naming the template.
    public init(source: String, name: String, directory: String? = nil) {
        self.source = source
        self.name = name
        self.directory = directory
        do {
            parsed = .success(try NK3Jinja.Template(source: source, name: name))
        } catch {
            parsed = .failure(error)
        }
    }

    /// The template parses (the error it would raise otherwise).
    public func check() throws(TemplateError) {
        if case .failure(let e) = parsed { throw TemplateError(e) }
    }

    /// Renders with the given top-level variables.
    public func render(_ variables: [String: JinjaValue]) throws(TemplateError) -> String {
        do {
            let template = try parsed.get()
            return try template.render(variables, loader: directory.map { DirectoryLoader(directory: $0) })
        } catch {
            throw TemplateError(error)
        }
    }
}

/// A template that does not parse or render.
public struct TemplateError: Error, Sendable, CustomStringConvertible {
    /// The template's name (file path; an included file's when the error is there).
    public var template: String
    /// Line in the template (1-based; 0 when unknown).
    public var line: Int
    /// Column in the line (1-based; 0 when unknown).
    public var column: Int
    /// What Jinja2 would call the failure (`TemplateSyntaxError`, `UndefinedError`, …, or `Unsupported`).
    public var kind: String
    /// What went wrong.
    public var message: String

    init(_ e: JinjaError) {
        template = e.file
        line = e.line
        column = e.column
        kind = e.kind.rawValue
        message = e.message
    }

    /// Makes an error.
    public init(template: String, line: Int, column: Int = 0, kind: String = "TemplateError", message: String) {
        self.template = template
        self.line = line
        self.column = column
        self.kind = kind
        self.message = message
    }

    /// `template:line:column: Kind: message`.
    public var description: String { "\(template):\(line):\(column): \(kind): \(message)" }
}
