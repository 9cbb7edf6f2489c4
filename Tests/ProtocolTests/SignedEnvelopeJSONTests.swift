import NK3Protocol
import Testing

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// `SignedEnvelope(json:)`, the hand-written strict parser the agent runs on every request body: it must
/// accept what any JSON encoder writes for an envelope, give the same result as JSONDecoder, and refuse
/// everything else as `.malformed`.
@Suite("Protocol: strict envelope JSON parsing")
struct SignedEnvelopeJSONTests {
    static let sample = SignedEnvelope(
        keyID: "0123456789abcdef", payload: Data((0..<200).map { UInt8(truncatingIfNeeded: $0 &* 7) }),
        signature: Data(repeating: 0xFE, count: 64))

    private func parsed(_ text: String) -> Result<SignedEnvelope, EnvelopeError> {
        Result { () throws(EnvelopeError) in try SignedEnvelope(json: Data(text.utf8)) }
    }

    private func malformedReason(_ text: String) -> String? {
        guard case .failure(.malformed(let why)) = parsed(text) else { return nil }
        return why
    }

    @Test func canonicalEncodingParsesToTheSameEnvelope() throws {
        let json = try CanonicalJSON.encode(Self.sample)
        #expect(try SignedEnvelope(json: json) == Self.sample)
        #expect(try CanonicalJSON.decode(SignedEnvelope.self, from: json) == Self.sample)
    }

    @Test func whatOtherEncodersWriteIsAccepted() throws {
        // Default JSONEncoder: escaped slashes in base64, any key order; pretty printing: whitespace.
        for formatting: JSONEncoder.OutputFormatting in [[], [.prettyPrinted], [.prettyPrinted, .sortedKeys]] {
            let encoder = JSONEncoder()
            encoder.outputFormatting = formatting
            let json = try encoder.encode(Self.sample)
            #expect(try SignedEnvelope(json: json) == Self.sample, "\(formatting)")
        }
        let b64 = Self.sample.payload.base64EncodedString()
        #expect(b64.contains("/"))
        let escaped = b64.replacing("/", with: "\\/")
        let sig = Self.sample.signature.base64EncodedString()
        let text = " \r\n{ \"sign\\u0061ture\" :\"\(sig)\",\t\"payload\":\"\(escaped)\",\"keyID\":\"0123456789abcdef\",\"version\":2 }\n"
        #expect(try parsed(text).get() == Self.sample)
    }

    @Test(arguments: [
        ("", "empty body"),
        ("[]", "not a JSON object"),
        ("null", "not a JSON object"),
        ("{", "expected a field name"),
        ("{\"version\":2,\"keyID\":\"k\",\"payload\":\"\",\"signature\":\"\"", "expected ',' or '}'"),
        ("{\"version\":2}", "missing field 'keyID'"),
        ("{\"keyID\":\"k\",\"payload\":\"\",\"signature\":\"\"}", "missing field 'version'"),
        ("{\"version\":2,\"version\":2,\"keyID\":\"k\",\"payload\":\"\",\"signature\":\"\"}", "duplicate field 'version'"),
        ("{\"version\":2,\"keyID\":\"k\",\"payload\":\"\",\"signature\":\"\",\"files\":{}}", "unknown field 'files'"),
        ("{\"version\":2,\"keyID\":\"k\",\"payload\":\"\",\"signature\":\"\"} {}", "after the envelope object"),
        ("{\"version\":\"2\",\"keyID\":\"k\",\"payload\":\"\",\"signature\":\"\"}", "'version' must be an integer"),
        ("{\"version\":2.0,\"keyID\":\"k\",\"payload\":\"\",\"signature\":\"\"}", "'version' must be an integer"),
        ("{\"version\":02,\"keyID\":\"k\",\"payload\":\"\",\"signature\":\"\"}", "leading zero"),
        ("{\"version\":2,\"keyID\":7,\"payload\":\"\",\"signature\":\"\"}", "'keyID' must be a string"),
        ("{\"version\":2,\"keyID\":\"k\",\"payload\":null,\"signature\":\"\"}", "'payload' must be a base64 string"),
        ("{\"version\":2,\"keyID\":\"k\",\"payload\":\"not base64!\",\"signature\":\"\"}", "'payload' is not valid base64"),
        ("{\"version\":2,\"keyID\":\"k\",\"payload\":\"QUJD\",\"signature\":\"QUI\"}", "'signature' is not valid base64"),
        ("{\"version\":2,\"keyID\":\"k\",\"payload\":\"QUJD\",\"signature\":\"QU==QUJD\"}", "'signature' is not valid base64"),
        ("{\"version\":2,\"keyID\":\"k\nk\",\"payload\":\"\",\"signature\":\"\"}", "control character"),
        ("{\"version\":2,\"keyID\":\"\\ud800\",\"payload\":\"\",\"signature\":\"\"}", "unpaired surrogate"),
        ("{\"version\":2,\"keyID\":\"\\q\",\"payload\":\"\",\"signature\":\"\"}", "invalid escape"),
        ("{\"version\":2,\"keyID\":\"k\",\"payload\":\"QUJD", "unterminated string"),
    ])
    func malformedInputIsRefusedWithAReason(_ text: String, _ reason: String) {
        let why = malformedReason(text)
        #expect(why?.contains(reason) == true, "\(text) → \(why ?? "accepted")")
    }

    @Test func keyIDThatIsNotUTF8IsMalformed() {
        var bytes = Array("{\"version\":2,\"keyID\":\"".utf8)
        bytes += [0xFF, 0xFE]
        bytes += Array("\",\"payload\":\"\",\"signature\":\"\"}".utf8)
        let result = Result { () throws(EnvelopeError) in try SignedEnvelope(json: Data(bytes)) }
        guard case .failure(.malformed(let why)) = result else {
            Issue.record("expected malformed, got \(result)")
            return
        }
        #expect(why.contains("UTF-8"))
    }

    @Test func jsonDecoderRefusesUnknownFieldsToo() {
        let text = "{\"version\":2,\"keyID\":\"k\",\"payload\":\"\",\"signature\":\"\",\"files\":{}}"
        #expect(throws: DecodingError.self) { try CanonicalJSON.decode(SignedEnvelope.self, from: Data(text.utf8)) }
    }

    /// SplitMix64: a fixed-seed generator, so that the differential tests below are reproducible.
    struct SeededGenerator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    private func envelopeJSON(payloadString: String) -> Data {
        Data("{\"version\":2,\"keyID\":\"k\",\"payload\":\"\(payloadString)\",\"signature\":\"\"}".utf8)
    }

    @Test func base64OfEveryLengthDecodesLikeFoundation() throws {
        var rng = SeededGenerator(state: 1)
        for length in 0..<300 {
            let data = Data((0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) })
            let env = try SignedEnvelope(json: envelopeJSON(payloadString: data.base64EncodedString()))
            #expect(env.payload == data, "length \(length)")
        }
    }

    @Test func base64GarbageIsAcceptedExactlyWhenFoundationAcceptsIt() {
        // Mutated valid base64 (a byte replaced by another alphabet byte, padding, or junk; cut; extended):
        // the parser's fast path must agree with Foundation's decoder on every one.
        var rng = SeededGenerator(state: 2)
        let pool = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ .:".utf8)
        var accepted = 0
        for round in 0..<3000 {
            let length = Int.random(in: 0..<40, using: &rng)
            var text = Array(Data((0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }).base64EncodedString().utf8)
            switch round % 4 {
            case 0 where !text.isEmpty: text[Int.random(in: 0..<text.count, using: &rng)] = pool.randomElement(using: &rng)!
            case 1 where !text.isEmpty: text.removeLast(Int.random(in: 1...min(3, text.count), using: &rng))
            case 2: text.append(pool.randomElement(using: &rng)!)
            default: break
            }
            let string = String(decoding: text, as: UTF8.self)
            let expected = Data(base64Encoded: string)
            let got = try? SignedEnvelope(json: envelopeJSON(payloadString: string)).payload
            #expect(got == expected, "\(string)")
            if got != nil { accepted += 1 }
        }
        // Both outcomes were exercised.
        #expect(accepted > 500 && accepted < 2900)
    }
}
