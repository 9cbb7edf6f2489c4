import Foundation
import NK3Kube
import Testing

@Suite("PollPace: the pace of polling waits")
struct PollPaceTests {
    @Test("the first look comes after 5 ms, then after half the time waited, never after more than the interval")
    func pace() {
        let interval = Duration.milliseconds(100)
        #expect(PollPace.delay(waited: .zero, interval: interval) == .milliseconds(5))
        #expect(PollPace.delay(waited: .milliseconds(8), interval: interval) == .milliseconds(5))
        #expect(PollPace.delay(waited: .milliseconds(40), interval: interval) == .milliseconds(20))
        #expect(PollPace.delay(waited: .milliseconds(199), interval: interval) == .microseconds(99_500))
        #expect(PollPace.delay(waited: .seconds(600), interval: interval) == interval)
    }

    @Test("an interval shorter than the first poll is used as it is")
    func shortInterval() {
        #expect(PollPace.delay(waited: .zero, interval: .milliseconds(1)) == .milliseconds(1))
        #expect(PollPace.delay(waited: .seconds(10), interval: .milliseconds(1)) == .milliseconds(1))
    }

    @Test("looks over a 15-minute wait: about as many as a fixed poll, plus a handful in the first interval")
    func pollsOverALongWait() {
        let interval = Duration.milliseconds(100)
        var waited = Duration.zero
        var looks = 0
        while waited < .seconds(900) {
            waited += PollPace.delay(waited: waited, interval: interval)
            looks += 1
        }
        // A fixed 100 ms poll looks 9,000 times in 15 minutes; the paced one at most ~10 more.
        #expect(looks > 9_000 && looks <= 9_010, "\(looks)")
    }
}

@Suite("JSONValue.jsonData: direct serialisation")
struct JSONValueSerialisationTests {
    static let sample: JSONValue = .object([
        "apiVersion": .string("v1"), "kind": .string("Pod"),
        "metadata": .object([
            "name": .string("web-0"), "labels": .object(["app": .string("web"), "z/last": .string("a/b")]),
            "annotations": .object(["note": .string("quote \" backslash \\ newline \n tab \t bell \u{07} é ü 日本")]),
        ]),
        "spec": .object(["replicas": .number(3), "ratio": .number(0.25), "big": .number(-12_345_678_901), "none": .null]),
        "status": .object(["ready": .bool(true), "done": .bool(false), "list": .array([.number(1), .string("x"), .array([]), .object([:])])]),
    ])

    @Test("writes the same bytes as JSONEncoder with sorted keys and unescaped slashes")
    func sameBytesAsJSONEncoder() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let expected = try encoder.encode(Self.sample)
        let got = Self.sample.jsonData()
        #expect(String(decoding: got, as: UTF8.self) == String(decoding: expected, as: UTF8.self))
    }

    @Test("round-trips through JSONDecoder, and decode(as:) reads typed values from it")
    func roundTrip() throws {
        #expect(try JSONDecoder().decode(JSONValue.self, from: Self.sample.jsonData()) == Self.sample)
        struct Meta: Decodable { var name: String; var labels: [String: String] }
        struct Obj: Decodable { var kind: String; var metadata: Meta }
        let obj = try Self.sample.decode(as: Obj.self)
        #expect(obj.kind == "Pod" && obj.metadata.name == "web-0" && obj.metadata.labels["z/last"] == "a/b")
    }
}
