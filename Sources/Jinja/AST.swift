/// A literal in the template source.
enum Literal: Sendable {
    case none, bool(Bool), int(Int), float(Double), string(String)

    var value: JinjaValue {
        switch self {
        case .none: .none
        case .bool(let b): .bool(b)
        case .int(let i): .int(i)
        case .float(let d): .float(d)
        case .string(let s): .string(s)
        }
    }
}

/// Arguments of a call, filter or test.
struct Arguments: Sendable {
    var positional: [Expr] = []
    var keywords: [(String, Expr)] = []
    var starArgs: Expr?
    var starKwargs: Expr?
}

enum BinaryOp: String, Sendable {
    case add = "+", sub = "-", mul = "*", div = "/", floorDiv = "//", mod = "%", pow = "**"
}

enum CompareOp: String, Sendable {
    case eq = "==", ne = "!=", lt = "<", le = "<=", gt = ">", ge = ">=", `in` = "in", notIn = "not in"
}

/// An expression node, with the location of its first token.
indirect enum Expr: Sendable {
    case literal(Literal, SourceLocation)
    case name(String, SourceLocation)
    case list([Expr], SourceLocation)
    case tuple([Expr], SourceLocation)
    case dict([(Expr, Expr)], SourceLocation)
    case getattr(Expr, String, SourceLocation)
    case getitem(Expr, Expr, SourceLocation)
    case slice(Expr?, Expr?, Expr?, SourceLocation)
    case call(Expr, Arguments, SourceLocation)
    /// `base | name(args)`; `base` is nil for the filters of a `{% filter %}` block or a block `set`.
    case filter(Expr?, String, Arguments, SourceLocation)
    case test(Expr, String, Arguments, SourceLocation)
    case not(Expr, SourceLocation)
    case neg(Expr, SourceLocation)
    case pos(Expr, SourceLocation)
    case binary(BinaryOp, Expr, Expr, SourceLocation)
    case and(Expr, Expr, SourceLocation)
    case or(Expr, Expr, SourceLocation)
    case concat([Expr], SourceLocation)
    case compare(Expr, [(CompareOp, Expr)], SourceLocation)
    case condition(test: Expr, then: Expr, otherwise: Expr?, SourceLocation)

    var location: SourceLocation {
        switch self {
        case .literal(_, let l), .name(_, let l), .list(_, let l), .tuple(_, let l), .dict(_, let l),
            .getattr(_, _, let l), .getitem(_, _, let l), .slice(_, _, _, let l), .call(_, _, let l),
            .filter(_, _, _, let l), .test(_, _, _, let l), .not(_, let l), .neg(_, let l), .pos(_, let l),
            .binary(_, _, _, let l), .and(_, _, let l), .or(_, _, let l), .concat(_, let l), .compare(_, _, let l),
            .condition(_, _, _, let l):
            l
        }
    }
}

/// An assignment target: `x`, `a, b`, `(a, (b, c))`, `ns.attr`.
indirect enum Target: Sendable {
    case name(String)
    case tuple([Target])
    case attribute(String, String)
}

/// A macro's parameters (name, default).
struct Parameters: Sendable {
    var names: [(String, Expr?)] = []
}

/// A statement node.
indirect enum Node: Sendable {
    case text(String)
    case output(Expr)
    case ifChain([(Expr, [Node])], otherwise: [Node]?)
    case forLoop(ForLoop)
    case set(Target, Expr, SourceLocation)
    case setBlock(Target, filter: Expr?, body: [Node], SourceLocation)
    case macro(MacroDef)
    case callBlock(call: Expr, parameters: Parameters, body: [Node], SourceLocation)
    case with([(Target, Expr)], body: [Node])
    case filterBlock(Expr, body: [Node])
    case include(Expr, ignoreMissing: Bool, withContext: Bool, SourceLocation)
    case importModule(Expr, alias: String, withContext: Bool, SourceLocation)
    case fromImport(Expr, names: [(String, String)], withContext: Bool, SourceLocation)
}

struct ForLoop: Sendable {
    var target: Target
    var iterable: Expr
    var condition: Expr?
    var body: [Node]
    var otherwise: [Node]?
    var recursive: Bool
    var location: SourceLocation
}

struct MacroDef: Sendable {
    var name: String
    var parameters: Parameters
    var body: [Node]
    /// Whether the body mentions `varargs`, `kwargs`, `caller` (Jinja2 only accepts extra arguments then).
    var usesVarargs: Bool
    var usesKwargs: Bool
    var usesCaller: Bool
    var location: SourceLocation
}
