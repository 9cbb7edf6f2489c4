#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension SignedEnvelope {
    /// Parses envelope JSON as it arrives over the wire, strictly: one JSON object with exactly the fields
    /// `version` (an integer), `keyID` (a string), `payload` and `signature` (base64 strings), each once,
    /// in any order, with any JSON whitespace and string escapes; nothing after it. Anything else is
    /// `EnvelopeError.malformed`.
    ///
    /// Written by hand rather than with JSONDecoder because the payload is ~100 KB of base64: this decodes
    /// it in one pass straight from the request bytes (JSONDecoder scans the string, copies it, then
    /// decodes it — 2.5× the time), and it refuses unknown and duplicate fields, which JSONDecoder lets by.
    public init(json: Data) throws(EnvelopeError) {
        let parsed = json.withUnsafeBytes { bytes in
            Result { () throws(EnvelopeError) -> SignedEnvelope in
                var parser = EnvelopeJSONParser(bytes: bytes)
                return try parser.envelope()
            }
        }
        self = try parsed.get()
    }
}

/// The hand-written parser behind `SignedEnvelope(json:)`. Only values of the four known fields are ever
/// parsed: any other field is refused by name, so nested objects, arrays, booleans and null never need a
/// grammar here.
struct EnvelopeJSONParser {
    let bytes: UnsafeRawBufferPointer
    var i = 0

    init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    private static let quote = UInt8(ascii: "\"")
    private static let backslash = UInt8(ascii: "\\")

    mutating func envelope() throws(EnvelopeError) -> SignedEnvelope {
        var version: Int?
        var keyID: String?
        var payload: Data?
        var signature: Data?
        skipWhitespace()
        try expect(UInt8(ascii: "{"), "body is not a JSON object")
        skipWhitespace()
        if peek() != UInt8(ascii: "}") {
            while true {
                skipWhitespace()
                guard peek() == Self.quote else { throw fail("expected a field name") }
                let name = try string()
                skipWhitespace()
                try expect(UInt8(ascii: ":"), "expected ':' after a field name")
                skipWhitespace()
                switch name {
                case Array("version".utf8):
                    guard version == nil else { throw duplicate("version") }
                    version = try integer("version")
                case Array("keyID".utf8):
                    guard keyID == nil else { throw duplicate("keyID") }
                    guard peek() == Self.quote else { throw wrongType("keyID", "a string") }
                    guard let text = UTF8Text.string(try string()) else {
                        throw .malformed("not a signed envelope: 'keyID' is not valid UTF-8")
                    }
                    keyID = text
                case Array("payload".utf8):
                    guard payload == nil else { throw duplicate("payload") }
                    payload = try base64("payload")
                case Array("signature".utf8):
                    guard signature == nil else { throw duplicate("signature") }
                    signature = try base64("signature")
                default:
                    let shown = String(decoding: name.prefix(64), as: UTF8.self)
                    throw .malformed("not a signed envelope: unknown field '\(shown)'")
                }
                skipWhitespace()
                if peek() == UInt8(ascii: ",") {
                    i += 1
                    continue
                }
                break
            }
        }
        try expect(UInt8(ascii: "}"), "expected ',' or '}' after a field")
        skipWhitespace()
        guard i == bytes.count else { throw fail("unexpected bytes after the envelope object") }
        guard let version else { throw missing("version") }
        guard let keyID else { throw missing("keyID") }
        guard let payload else { throw missing("payload") }
        guard let signature else { throw missing("signature") }
        return SignedEnvelope(version: version, keyID: keyID, payload: payload, signature: signature)
    }

    // MARK: tokens

    private func peek() -> UInt8? { i < bytes.count ? bytes[i] : nil }

    private mutating func skipWhitespace() {
        while i < bytes.count {
            switch bytes[i] {
            case 0x20, 0x09, 0x0A, 0x0D: i += 1
            default: return
            }
        }
    }

    private mutating func expect(_ byte: UInt8, _ why: String) throws(EnvelopeError) {
        guard peek() == byte else { throw fail(why) }
        i += 1
    }

    /// A JSON integer (no fraction or exponent), as JSONDecoder would accept for an `Int` field.
    private mutating func integer(_ field: String) throws(EnvelopeError) -> Int {
        let start = i
        if peek() == UInt8(ascii: "-") { i += 1 }
        let digitsStart = i
        while let b = peek(), b >= UInt8(ascii: "0"), b <= UInt8(ascii: "9") { i += 1 }
        let digits = i - digitsStart
        guard digits > 0 else { throw wrongType(field, "an integer") }
        guard digits == 1 || bytes[digitsStart] != UInt8(ascii: "0") else { throw fail("leading zero in '\(field)'") }
        if let b = peek(), b == UInt8(ascii: ".") || b == UInt8(ascii: "e") || b == UInt8(ascii: "E") {
            throw wrongType(field, "an integer")
        }
        guard digits <= 18 else { throw .malformed("not a signed envelope: '\(field)' is out of range") }
        var value = 0
        for k in digitsStart..<i { value = value * 10 + Int(bytes[k] - UInt8(ascii: "0")) }
        return bytes[start] == UInt8(ascii: "-") ? -value : value
    }

    /// A JSON string starting at the opening quote, unescaped, as UTF-8 bytes (not yet validated as UTF-8).
    private mutating func string() throws(EnvelopeError) -> [UInt8] {
        i += 1  // opening quote
        var out: [UInt8] = []
        while true {
            guard let b = peek() else { throw fail("unterminated string") }
            i += 1
            switch b {
            case Self.quote:
                return out
            case Self.backslash:
                guard let e = peek() else { throw fail("unterminated string") }
                i += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"): try unicodeEscape(into: &out)
                default: throw fail("invalid escape in a string")
                }
            case 0x00..<0x20:
                throw fail("control character in a string")
            default:
                out.append(b)
            }
        }
    }

    /// The rest of a `\uXXXX` escape (after the `u`), with a following low surrogate if it is a high one.
    private mutating func unicodeEscape(into out: inout [UInt8]) throws(EnvelopeError) {
        var code = try hex4()
        if (0xD800..<0xDC00).contains(code) {
            guard i + 1 < bytes.count, bytes[i] == Self.backslash, bytes[i + 1] == UInt8(ascii: "u") else {
                throw fail("unpaired surrogate in a string")
            }
            i += 2
            let low = try hex4()
            guard (0xDC00..<0xE000).contains(low) else { throw fail("unpaired surrogate in a string") }
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
        } else if (0xDC00..<0xE000).contains(code) {
            throw fail("unpaired surrogate in a string")
        }
        guard let scalar = Unicode.Scalar(code) else { throw fail("invalid \\u escape") }
        out.append(contentsOf: String(Character(scalar)).utf8)
    }

    private mutating func hex4() throws(EnvelopeError) -> UInt32 {
        guard i + 4 <= bytes.count else { throw fail("short \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let b = bytes[i]
            let digit: UInt8
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = b - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = b - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = b - UInt8(ascii: "A") + 10
            default: throw fail("invalid \\u escape")
            }
            value = value << 4 | UInt32(digit)
            i += 1
        }
        return value
    }

    /// A JSON string holding standard base64 (with padding), decoded. The common case — no escapes — is
    /// decoded straight from the request bytes by `Base64.decodeGroups`; a string with escapes (`\/` from
    /// an encoder that escapes slashes) is unescaped first and decoded by Foundation.
    private mutating func base64(_ field: String) throws(EnvelopeError) -> Data {
        guard peek() == Self.quote else { throw wrongType(field, "a base64 string") }
        let start = i + 1
        var (decoded, consumed) = Base64.decodeGroups(bytes, from: start)
        var end = start + consumed
        if end < bytes.count, bytes[end] != Self.quote, end + 4 < bytes.count, bytes[end + 4] == Self.quote,
            let last = Data(base64Encoded: Data(bytes[end..<end + 4]))
        {
            // The final, padded group.
            decoded.append(last)
            end += 4
        }
        if end < bytes.count, bytes[end] == Self.quote {
            i = end + 1
            return decoded
        }
        // Escapes, or not base64: the general path decides.
        let text = try string()
        guard let data = Data(base64Encoded: Data(text)) else {
            throw .malformed("not a signed envelope: '\(field)' is not valid base64")
        }
        return data
    }

    // MARK: errors

    private func fail(_ why: String) -> EnvelopeError {
        .malformed(bytes.isEmpty ? "not a signed envelope: empty body" : "not a signed envelope: \(why) at byte \(i)")
    }

    private func duplicate(_ field: String) -> EnvelopeError {
        .malformed("not a signed envelope: duplicate field '\(field)'")
    }

    private func missing(_ field: String) -> EnvelopeError {
        .malformed("not a signed envelope: missing field '\(field)'")
    }

    private func wrongType(_ field: String, _ expected: String) -> EnvelopeError {
        .malformed("not a signed envelope: '\(field)' must be \(expected)")
    }
}

/// UTF-8 validation that works on every platform nk3 builds for.
enum UTF8Text {
    /// The bytes as a String, or nil if they are not valid UTF-8.
    static func string(_ bytes: some Collection<UInt8>) -> String? {
        if #available(macOS 15, iOS 18, tvOS 18, watchOS 11, visionOS 2, *) {
            return String(validating: bytes, as: UTF8.self)
        }
        return String(bytes: bytes, encoding: .utf8)
    }
}

/// Base64 decoding of the bulk of a payload, straight from the request bytes.
enum Base64 {
    /// For each alphabet byte, its 6-bit value shifted into place for each of the 4 positions of a group;
    /// any other byte sets bit 24, so one OR over a group tells whether all four bytes were valid.
    private static let table: [UInt32] = {
        var t = [UInt32](repeating: 1 << 24, count: 4 * 256)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        for position in 0..<4 {
            for (value, byte) in alphabet.enumerated() {
                t[position * 256 + Int(byte)] = UInt32(value) << (18 - 6 * UInt32(position))
            }
        }
        return t
    }()

    /// Decodes whole groups of four alphabet bytes from `start` until the first group that is not one
    /// (padding, a quote, an escape, or anything else, left for the caller). Returns the bytes and how many
    /// input bytes were consumed (a multiple of 4).
    static func decodeGroups(_ input: UnsafeRawBufferPointer, from start: Int) -> (Data, consumed: Int) {
        let groups = max(0, input.count - start) / 4
        var out = Data(count: groups * 3)
        var consumed = 0
        var produced = 0
        table.withUnsafeBufferPointer { t in
            out.withUnsafeMutableBytes { (o: UnsafeMutableRawBufferPointer) -> Void in
                var i = start
                var j = 0
                let end = start + groups * 4
                while i < end {
                    let v =
                        t[Int(input[i])] | t[256 + Int(input[i + 1])] | t[512 + Int(input[i + 2])]
                        | t[768 + Int(input[i + 3])]
                    if v & (1 << 24) != 0 { break }
                    o[j] = UInt8(truncatingIfNeeded: v >> 16)
                    o[j + 1] = UInt8(truncatingIfNeeded: v >> 8)
                    o[j + 2] = UInt8(truncatingIfNeeded: v)
                    i += 4
                    j += 3
                }
                consumed = i - start
                produced = j
            }
        }
        out.count = produced
        return (out, consumed)
    }
}
