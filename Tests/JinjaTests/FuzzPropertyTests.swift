import Foundation
import Testing

@testable import NK3Jinja

/// Property tests on arbitrary template text from a seeded generator: the engine returns (output or a
/// `JinjaError`) for every input — no trap, no crash — and renders the same text the same way twice.
/// (The libFuzzer target `jinja` under Fuzz/ explores further; this runs in every test run.)
@Suite("Jinja engine on arbitrary text")
struct FuzzPropertyTests {
    /// SplitMix64: a small deterministic generator, so a failure reproduces from its seed.
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static let fragments = [
        "{{", "}}", "{%", "%}", "{#", "#}", "{{-", "-}}", "{%-", "-%}", "{%+", " ", "\n", "\r\n", "x", "node",
        "d", "items", ".", "[", "]", "(", ")", "{", "}", ",", ":", "|", "~", "+", "-", "*", "/", "//", "%", "**",
        "==", "!=", "<", ">=", "=", "'", "\"", "\\", "0", "1", "2.5", "1e308", "9223372036854775807", "-1",
        "if", "elif", "else", "endif", "for", "in", "endfor", "set", "endset", "macro", "endmacro", "call",
        "endcall", "caller", "with", "endwith", "filter", "endfilter", "raw", "endraw", "include", "import",
        "from", "as", "not", "and", "or", "is", "defined", "none", "true", "loop", "loop.index", "range",
        "upper", "join", "default", "map", "attribute", "sort", "groupby", "format", "'%s'", "batch", "recursive",
        "namespace", "ns.a", "varargs", "kwargs", "é", "\u{0}", "🙂", "\t",
    ]

    static func text(_ rng: inout SplitMix) -> String {
        let n = Int.random(in: 0...40, using: &rng)
        var s = ""
        for _ in 0..<n {
            if Int.random(in: 0..<10, using: &rng) == 0 {
                s.unicodeScalars.append(Unicode.Scalar(UInt8.random(in: 0...127, using: &rng)))
            } else {
                s += fragments.randomElement(using: &rng)!
            }
        }
        return s
    }

    static func context() -> [String: JinjaValue] { [
        "node": .dict(PyDict([("name", .string("n1")), ("disks", .list([.string("/dev/sda")])), ("n", .int(3))])),
        "d": .dict(PyDict([("a", .int(1)), ("b", .list([]))])),
        "items": .list([.int(3), .int(1), .string("x")]),
    ] }

    static func outcome(_ source: String) -> Result<String, JinjaError> {
        Result { () throws(JinjaError) in try Template(source: source, name: "fuzz").render(context()) }
    }

    @Test("20,000 generated templates: no crash, deterministic, every failure is located")
    func generated() {
        var rng = SplitMix(state: 0x6E6B_336A_696E_6A61)
        var rendered = 0
        var refused = 0
        for _ in 0..<20_000 {
            let source = Self.text(&rng)
            let first = Self.outcome(source)
            switch (first, Self.outcome(source)) {
            case (.success(let a), .success(let b)):
                #expect(a == b, "\(source.debugDescription)")
                rendered += 1
            case (.failure(let a), .failure(let b)):
                #expect(a == b, "\(source.debugDescription)")
                #expect(a.line >= 1, "unlocated error for \(source.debugDescription): \(a)")
                refused += 1
            default:
                Issue.record("\(source.debugDescription) rendered once and failed once")
            }
        }
        // Both paths were exercised (a generator that only produced errors would test little).
        #expect(rendered > 1_000)
        #expect(refused > 1_000)
    }

    @Test("text without tags renders as itself, newlines normalised and one trailing newline dropped")
    func plainText() throws {
        var rng = SplitMix(state: 42)
        for _ in 0..<2_000 {
            var s = ""
            for _ in 0..<Int.random(in: 0...30, using: &rng) {
                s += ["a", " ", "\n", "\r\n", "\r", "}", "%", "#", "é", "\t"].randomElement(using: &rng)!
            }
            var expected = s.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
            if expected.hasSuffix("\n") { expected.removeLast() }
            #expect(try Template(source: s, name: "p").render([:]) == expected, "\(s.debugDescription)")
        }
    }
}
