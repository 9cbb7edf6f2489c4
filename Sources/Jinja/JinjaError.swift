/// An error from lexing, parsing or rendering a template. Its `kind` is the name Jinja2 gives the same failure
/// (`TemplateSyntaxError`, `UndefinedError`, `TypeError`, …), or `Unsupported` for Jinja2 features this engine
/// does not implement (it refuses rather than render differently).
public struct JinjaError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure, named as Jinja2 (or Python) names it.
    public enum Kind: String, Sendable, Hashable {
        /// The template text does not parse (`jinja2.TemplateSyntaxError`).
        case syntax = "TemplateSyntaxError"
        /// A compile-time check failed: unknown filter or test (`jinja2.TemplateAssertionError`).
        case assertion = "TemplateAssertionError"
        /// A filter got arguments it cannot use (`jinja2.FilterArgumentError`).
        case filterArgument = "FilterArgumentError"
        /// An undefined value was used where Jinja2 raises (`jinja2.UndefinedError`).
        case undefined = "UndefinedError"
        /// An included or imported template does not exist (`jinja2.TemplateNotFound`).
        case notFound = "TemplateNotFound"
        /// Python's `TypeError` (wrong operand or argument types).
        case type = "TypeError"
        /// Python's `ValueError`.
        case value = "ValueError"
        /// Python's `ZeroDivisionError`.
        case zeroDivision = "ZeroDivisionError"
        /// Python's `KeyError`, `IndexError` where Jinja2 lets them through.
        case lookup = "LookupError"
        /// Python's `OverflowError`: a result beyond what this engine represents (64-bit integers).
        case overflow = "OverflowError"
        /// Python's `RecursionError`.
        case recursion = "RecursionError"
        /// Jinja2 accepts this, nk3's engine does not implement it.
        case unsupported = "Unsupported"
        /// `jinja2.TemplateRuntimeError`, `jinja2.FilterArgumentError`-like failures.
        case runtime = "TemplateRuntimeError"
    }

    /// The kind of failure.
    public var kind: Kind
    /// What went wrong.
    public var message: String
    /// The template's name (file path), when known.
    public var file: String
    /// 1-based line; 0 when unknown.
    public var line: Int
    /// 1-based column; 0 when unknown.
    public var column: Int

    /// Makes an error.
    public init(_ kind: Kind, _ message: String, file: String = "", line: Int = 0, column: Int = 0) {
        self.kind = kind
        self.message = message
        self.file = file
        self.line = line
        self.column = column
    }

    /// `file:line:column: Kind: message`.
    public var description: String {
        "\(file.isEmpty ? "<template>" : file):\(line):\(column): \(kind.rawValue): \(message)"
    }

    /// The error with a location filled in if it had none.
    func located(file: String, line: Int, column: Int) -> JinjaError {
        var e = self
        if e.line == 0 {
            e.file = file
            e.line = line
            e.column = column
        } else if e.file.isEmpty {
            e.file = file
        }
        return e
    }
}

/// A location in a template: 1-based line and column.
public struct SourceLocation: Sendable, Hashable {
    /// 1-based line.
    public var line: Int
    /// 1-based column (Unicode scalars).
    public var column: Int
}
