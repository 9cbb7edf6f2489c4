import NK3Protocol
import Testing

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// `CommandPayload.wireBytes()` / `init(wireBytes:)`: the layout of the signed bytes (a JSON header line,
/// then the raw file contents) and that it round-trips every command.
@Suite("Protocol: payload wire form")
struct CommandPayloadWireTests {
    let now = Date(timeIntervalSince1970: 1_750_000_000.5)

    func payload(_ command: Command) -> CommandPayload {
        CommandPayload(node: "node-a", serial: 9, issuedAt: now, expiresAt: now.addingTimeInterval(300), command: command)
    }

    static let files = [
        "configuration.nix": "{ pkgs, ... }:\n{\n  networking.hostName = \"a\";\n  # naïve — ✓ 🚀\n}\n",
        "k3s.nix": "{ }", "empty.nix": "", "Zebra.nix": "\u{0}\t\"\\",
    ]

    @Test func everyCommandRoundTrips() throws {
        let commands: [Command] = [
            .apply(ApplyBundle(files: Self.files, action: .switch, upgrade: true, nixChannel: "https://nixos.org/channels/x")),
            .apply(ApplyBundle(files: ["configuration.nix": "{}"], action: .test, confirmTimeoutSeconds: 60)),
            .confirm(ConfirmCommand(applySerial: 8)), .reboot(RebootCommand(reason: "kernel \"6.6\"")),
            .rollback(RollbackCommand(reason: "unhealthy")),
        ]
        for command in commands {
            let p = payload(command)
            let bytes = try p.wireBytes()
            #expect(try CommandPayload(wireBytes: bytes) == p)
            #expect(try CommandPayload(wireBytes: bytes).wireBytes() == bytes)
        }
    }

    @Test func layoutIsAHeaderLineThenTheContentsInNameOrder() throws {
        let bytes = try payload(.apply(ApplyBundle(files: Self.files, action: .boot))).wireBytes()
        let lf = try #require(bytes.firstIndex(of: 0x0A))
        let header = String(decoding: bytes[..<lf], as: UTF8.self)
        #expect(header.hasPrefix("{\"command\":{\"apply\":{\"action\":\"boot\""))
        #expect(!header.contains("networking"))  // contents are not in the header
        // Byte order: upper case before lower case.
        let names = ["Zebra.nix", "configuration.nix", "empty.nix", "k3s.nix"]
        let listed = names.map { header.firstRange(of: "\"name\":\"\($0)\"")!.lowerBound }
        #expect(listed == listed.sorted())
        for name in names { #expect(header.contains("\"name\":\"\(name)\",\"size\":\(Self.files[name]!.utf8.count)}")) }
        #expect(Data(bytes[(lf + 1)...]) == Data(names.map { Self.files[$0]! }.joined().utf8))
    }

    @Test func commandsWithoutFilesEndWithTheHeaderLine() throws {
        let bytes = try payload(.reboot(RebootCommand(reason: "r"))).wireBytes()
        #expect(bytes.last == 0x0A)
        #expect(bytes.filter { $0 == 0x0A }.count == 1)
    }

    @Test func bytesWithoutAHeaderLineAreMalformed() throws {
        let json = try CanonicalJSON.encode(payload(.reboot(RebootCommand(reason: "r"))))
        #expect(throws: EnvelopeError.self) { try CommandPayload(wireBytes: json) }
        #expect(throws: EnvelopeError.self) { try CommandPayload(wireBytes: Data()) }
    }
}
