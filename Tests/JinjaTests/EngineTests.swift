import Foundation
import Testing

@testable import NK3Jinja

/// What the parity set cannot show: error locations, refusals of what the engine does not implement, limits
/// that keep a template from crashing or exhausting the coordinator.
@Suite("Jinja engine")
struct EngineTests {
    func render(_ source: String, _ vars: [String: JinjaValue] = [:], loader: (any TemplateLoader)? = nil)
        throws(JinjaError) -> String
    {
        try Template(source: source, name: "t.j2").render(vars, loader: loader)
    }

    func error(_ source: String, _ vars: [String: JinjaValue] = [:]) -> JinjaError? {
        do {
            _ = try render(source, vars)
            return nil
        } catch {
            return error
        }
    }

    @Test("a syntax error names file, line, column and Jinja2's exception")
    func syntaxLocation() throws {
        let e = try #require(error("line one\n  {{ 1 + }}\n"))
        #expect(e.kind == .syntax)
        #expect(e.file == "t.j2")
        #expect(e.line == 2)
        #expect(e.column == 10)
        #expect(e.description == "t.j2:2:10: TemplateSyntaxError: unexpected 'end of print statement'")
    }

    @Test("a render error names the expression's location and Jinja2's message")
    func renderLocation() throws {
        let e = try #require(error("a\nb {{ x.y.z }}", ["x": .dict(PyDict([("q", .int(1))]))]))
        #expect(e.kind == .undefined)
        #expect(e.message == "'dict object' has no attribute 'y'")
        #expect((e.line, e.column) == (2, 9))  // the second `.`: x.y is Undefined, taking .z of it raises
        let u = try #require(error("{% for i in [1] %}\n{{ missing + 1 }}{% endfor %}"))
        #expect(u.kind == .undefined)
        #expect(u.line == 2)
    }

    @Test("an error inside an included template names that file")
    func includeLocation() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nk3-jinja-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data("ok\n{{ 1 // 0 }}".utf8).write(to: dir.appendingPathComponent("inner.j2"))
        do {
            _ = try render("{% include 'inner.j2' %}", loader: DirectoryLoader(directory: dir.path))
            Issue.record("expected an error")
        } catch {
            #expect(error.kind == .zeroDivision)
            #expect(error.file == dir.appendingPathComponent("inner.j2").path)
            #expect(error.line == 2)
        }
    }

    @Test("what the engine does not implement is an error naming it, never other output")
    func unsupported() {
        for source in [
            "{% extends 'base.j2' %}", "{% block x %}{% endblock %}", "{% autoescape true %}{% endautoescape %}",
            "{{ lipsum() }}", "{{ 1000|filesizeformat }}", "{{ 'a'|urlize }}", "{{ [1]|random }}",
            "{{ range(10)|list|pprint ~ ('x' * 100)|pprint }}", "{{ 'a-b c'|wordwrap(3) }}",
            "{{ {}.update({'a': 1}) }}", "{{ 'x'.format(1) }}", "{{ x.__class__ }}", "{{ range }}",
            "{{ (-8) ** 0.5 }}", "{{ range(10000000) }}",
        ] {
            let e = error(source, ["x": .int(1)])
            #expect(e?.kind == .unsupported, "\(source): \(String(describing: e))")
        }
    }

    @Test("64-bit overflow is an OverflowError, not a wrapped number or a trap")
    func overflow() {
        for source in [
            "{{ 9223372036854775807 + 1 }}", "{{ 2 ** 64 }}", "{{ -9223372036854775807 - 2 }}",
            "{{ 3037000500 * 3037000500 }}",
        ] {
            #expect(error(source)?.kind == .overflow, "\(source)")
        }
        #expect(error("{{ 'x' * 100000000 }}")?.kind == .overflow)
        #expect(error("{{ 99999999999999999999 }}")?.message.contains("OverflowError") == true)
    }

    @Test("runaway recursion and nesting stop with an error")
    func limits() throws {
        #expect(error("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}")?.kind == .recursion)
        let deep = String(repeating: "(", count: 500) + "1" + String(repeating: ")", count: 500)
        #expect(error("{{ \(deep) }}")?.kind == .unsupported)
        let nested = String(repeating: "{% if true %}", count: 300) + String(repeating: "{% endif %}", count: 300)
        #expect(error(nested)?.kind == .unsupported)
        // Left-associative chains nest the tree as deeply (evaluation recurses through them).
        #expect(error("{{ 1" + String(repeating: " + 1", count: 5000) + " }}")?.kind == .unsupported)
        #expect(error("{{ x" + String(repeating: "|default(1)", count: 5000) + " }}")?.kind == .unsupported)
        #expect(error("{{ x" + String(repeating: ".a", count: 5000) + " }}")?.kind == .unsupported)
        // Within the limit they render.
        #expect(try render("{{ 1" + String(repeating: " + 1", count: 99) + " }}") == "100")
    }

    @Test("the loader stays inside its directory and reports a missing template")
    func loader() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nk3-jinja-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("sub"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data("secret".utf8).write(to: dir.appendingPathComponent("outside.j2"))
        let loader = DirectoryLoader(directory: dir.appendingPathComponent("sub").path)
        #expect(try loader.load("../outside.j2") == nil)
        #expect(throws: JinjaError.self) { try render("{% include '../outside.j2' %}", loader: loader) }
        #expect(try render("{% include 'nope.j2' ignore missing %}x", loader: loader) == "x")
    }

    @Test("Python's float repr")
    func floats() {
        let cases: [(Double, String)] = [
            (1e16, "1e+16"), (1e15, "1000000000000000.0"), (1e-5, "1e-05"), (0.0001, "0.0001"), (2.5, "2.5"),
            (-0.0, "-0.0"), (.infinity, "inf"), (.nan, "nan"), (123456789.125, "123456789.125"),
(Double.leastNonzeroMagnitude, "5e-324"), (1.7976931348623157e308, "1.7976931348623157e+308"),
        ]
        for (d, s) in cases { #expect(PyFormat.float(d) == s, "\(d)") }
    }

    @Test("values from Swift: ordered dicts keep their order, plain dicts sort their keys")
    func fromSwift() throws {
        let v = JinjaValue.from([("b", 1), ("a", "x")] as [(String, Any)])
        #expect(try render("{{ v }}", ["v": v]) == "{'b': 1, 'a': 'x'}")
        #expect(try render("{{ v }}", ["v": .from(["b": 1, "a": [true, nil] as [Any?]])]) == "{'a': [True, None], 'b': 1}")
    }
}

/// A macro holds the frame it was defined in and the frame holds the macro; the render must not leave that cycle
/// behind (found by LeakSanitizer through the `jinja` fuzz target: Fuzz/regressions/jinja/macro-frame-cycle.j2).
@Suite("Jinja: macros do not outlive the render")
struct JinjaMacroLifetimeTests {
    @Test func macroFramesAreFreedAfterTheRender() throws {
        let t = try Template(
            source: "{% macro nixlist(xs) %}[ {% for x in xs %}\"{{ x }}\" {% endfor %}]{% endmacro %}{{ nixlist(words) }}",
            name: "t")
        let ev = Evaluator(loader: nil)
        #expect(try ev.renderTemplate(t, context: ["words": .list([.string("a")])]) == "[ \"a\" ]")
        weak let frame = ev.macroFrames.first
        #expect(frame != nil, "the macro's frame is alive while the evaluator may still call it")
        ev.releaseMacroFrames()
        #expect(frame == nil, "released: the macro and its frame are freed")
        // Template.render releases them itself, and renders the same text.
        #expect(try t.render(["words": .list([.string("a")])]) == "[ \"a\" ]")
    }
}
