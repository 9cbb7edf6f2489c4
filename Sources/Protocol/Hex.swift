/// Lowercase hex of bytes (what `String(format: "%02x")` per byte gave; FoundationEssentials has no
/// `String(format:)`).
public enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    /// `[0x0a, 0xff]` → `0aff`.
    public static func lowercase<Bytes: Sequence<UInt8>>(_ bytes: Bytes) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
