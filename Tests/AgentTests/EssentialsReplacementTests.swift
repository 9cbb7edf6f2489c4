import Foundation
@testable import NK3Agent
import NK3Common
import NK3Protocol
import Testing

/// The agent's modules link only FoundationEssentials; these helpers replace the full-Foundation APIs they used.
/// Tests link full Foundation, so each helper is checked against the API it replaces, on the same inputs.
@Suite("FoundationEssentials replacements agree with Foundation")
struct EssentialsReplacementTests {
    static let paths = [
        "/nix/var/nix/profiles/system", "/nix/var/nix/profiles/system/", "/a", "/", "a/b", "a/b/", "",
        "/root/tmp//x", "relative/dir/file.json", "//a",
    ]

    @Test("PathName matches NSString's path arithmetic", arguments: paths)
    func pathName(_ path: String) {
        #expect(PathName.lastComponent(path) == (path as NSString).lastPathComponent)
        #expect(PathName.deletingLastComponent(path) == (path as NSString).deletingLastPathComponent)
        #expect(
            PathName.appending("last-accepted-serial.json", to: path)
                == (path as NSString).appendingPathComponent("last-accepted-serial.json"))
    }

    @Test("PathName where Foundation is no oracle: a bare name (its deletingLastPathComponent traps), two trailing slashes")
    func pathNameEdges() {
        #expect(PathName.lastComponent("a") == "a")
        #expect(PathName.deletingLastComponent("a") == "")
        #expect(PathName.appending("x", to: "a") == "a/x")
        #expect(PathName.lastComponent("/a/b//") == "b")
        #expect(PathName.deletingLastComponent("/a/b//") == "/a")
        #expect(PathName.appending("x", to: "/a/b//") == "/a/b/x")  // NSString keeps "//" here
    }

    static let texts = [
        "", "   ", "ok", " ok\n", "\t active \r\n", "\u{00A0}host\u{2003}", "a b", "\u{2028}x\u{0085}", "\n\n",
        "é\u{301} ", " \u{1F600} ",
    ]

    @Test("trimming matches trimmingCharacters(in:)", arguments: texts)
    func trimming(_ text: String) {
        #expect(text.trimmingWhitespaceAndNewlines() == text.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(text.trimming(where: \.isHorizontalWhitespace) == text.trimmingCharacters(in: .whitespaces))
        #expect(text.trimming(where: { $0 == "\r" }) == text.trimmingCharacters(in: CharacterSet(charactersIn: "\r")))
    }

    @Test(
        "percentDecoded matches removingPercentEncoding",
        arguments: ["plain", "a%20b", "%41%42", "%e2%82%AC", "%", "%4", "%zz", "%C3", "100%25", "a+b", ""])
    func percentDecoding(_ text: String) {
        #expect(HTTPServerRequest.percentDecoded(text) == text.removingPercentEncoding)
    }

    @Test("Hex.lowercase matches %02x per byte")
    func hex() {
        let bytes: [UInt8] = [0, 1, 0x0a, 0x7f, 0x80, 0xab, 0xff]
        #expect(Hex.lowercase(bytes) == bytes.map { String(format: "%02x", $0) }.joined())
        #expect(Hex.lowercase([UInt8]()) == "")
    }

    @Test("createDirectory makes missing parents with exactly the mode, and refuses a file in the way")
    func createDirectory() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("nk3-mkdir-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: base) }
        // 0777 is never what mkdir leaves under the usual umask (022): the mode is set, not masked.
        try SecureFiles.createDirectory("\(base)/a/b", permissions: 0o777)
        for dir in ["\(base)/a", "\(base)/a/b"] {
            let mode = try #require(try FileManager.default.attributesOfItem(atPath: dir)[.posixPermissions] as? Int)
            #expect(mode == 0o777)
        }
        try SecureFiles.createDirectory("\(base)/a/b", permissions: 0o700)  // exists: no change, no error
        try SecureFiles.writeAtomically(Data("x".utf8), to: "\(base)/file")
        #expect(throws: SecureFileError.self) { try SecureFiles.createDirectory("\(base)/file") }
        #expect(throws: SecureFileError.self) { try SecureFiles.createDirectory("\(base)/file/sub") }
    }
}
