import Crypto
import NK3Protocol
import Testing

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Properly signed envelopes whose fields are unsafe to write into a file or a log, and serials that would lock an
/// agent out (issue 16 items 5 and 8). Each is refused as the agent refuses it: by `EnvelopeVerifier`.
@Suite("Protocol: content checks on signed fields, bounded serials")
struct EnvelopeContentTests {
    let signer = EnvelopeSigner(privateKey: Curve25519.Signing.PrivateKey())
    let now = Date(timeIntervalSince1970: 1_750_000_000)
    var verifier: EnvelopeVerifier { EnvelopeVerifier(node: "node-a", trustedKeys: [signer.privateKey.publicKey]) }
    /// A serial as the coordinator derives it at `now` (milliseconds since 1970).
    var timeSerial: UInt64 { UInt64(now.timeIntervalSince1970 * 1000) }

    private func verify(_ command: Command, serial: UInt64? = nil, last: UInt64? = nil) -> EnvelopeError? {
        do {
            let env = try signer.sign(command, node: "node-a", serial: serial ?? timeSerial, now: now)
            _ = try verifier.verify(env, lastAcceptedSerial: last, now: now)
            return nil
        } catch let error as EnvelopeError {
            return error
        } catch {
            Issue.record("signing failed: \(error)")
            return nil
        }
    }

    private func apply(files: [String: String] = ["configuration.nix": "{ }\n"], channel: String? = nil) -> Command {
        .apply(ApplyBundle(files: files, action: .switch, upgrade: channel != nil, nixChannel: channel))
    }

    private func malformed(_ error: EnvelopeError?) -> String? {
        if case .malformed(let why)? = error { return why }
        return nil
    }

    @Test("a channel URL with a line break, a space, a tab or a control character is refused; a plain one passes")
    func channelURLs() {
        #expect(verify(apply(channel: "https://nixos.org/channels/nixos-24.05")) == nil)
        for bad in [
            "https://nixos.org/channels/nixos-24.05\nhttps://evil.example/x nixos",
            "https://nixos.org/channels/nixos-24.05 evil", "https://a.example/\tx", "https://a.example/\r",
            "https://a.example/\u{0}", "https://a.example/\u{85}", "https://a.example/\u{2028}x",
        ] {
            let why = malformed(verify(apply(channel: bad)))
            #expect(why?.contains("nixChannel") == true, "\(bad.debugDescription): \(why ?? "accepted")")
            #expect(why?.contains("\n") == false, "the error message itself carries no line break")
        }
        let long = "https://a.example/" + String(repeating: "a", count: SignedText.maxURLBytes)
        #expect(malformed(verify(apply(channel: long)))?.contains("at most") == true)
    }

    @Test("reasons with line breaks, control characters or bidi overrides are refused; ordinary text passes")
    func reasons() {
        #expect(verify(.reboot(RebootCommand(reason: "nk3: kernel 6.6 → 6.12 (rollout 3/7)"))) == nil)
        #expect(verify(.rollback(RollbackCommand(reason: "kubelet never Ready"))) == nil)
        for bad in ["ok\nDec 07 nk3-agent[1]: apply COMMITTED", "ok\r", "\u{1b}[2J", "a\u{202E}b", "x\u{2029}"] {
            #expect(malformed(verify(.reboot(RebootCommand(reason: bad))))?.contains("reboot reason") == true, "\(bad.debugDescription)")
            #expect(malformed(verify(.rollback(RollbackCommand(reason: bad))))?.contains("rollback reason") == true)
        }
        let long = String(repeating: "r", count: SignedText.maxReasonBytes + 1)
        #expect(malformed(verify(.reboot(RebootCommand(reason: long))))?.contains("at most 512") == true)
    }

    @Test("file names with a leading dash are refused like dot files and directories")
    func dashFileNames() {
        for bad in ["-rf", "--help", "-", ".hidden", "a/b", "a b", "a\nb", String(repeating: "n", count: 129)] {
            let why = malformed(verify(apply(files: ["configuration.nix": "{ }", bad: "x"])))
            #expect(why?.contains("invalid file name") == true, "\(bad.debugDescription): \(why ?? "accepted")")
        }
        #expect(verify(apply(files: ["configuration.nix": "{ }", "k3s-server.nix": "{ }", "a-b_c.1.nix": ""])) == nil)
        #expect(ApplyBundle.isValidFileName("x-") && !ApplyBundle.isValidFileName("-x"))
        // File contents are configuration: line breaks and tabs are theirs.
        #expect(verify(apply(files: ["configuration.nix": "{\n\tnetworking.hostName = \"a\";\r\n}\n"])) == nil)
    }

    @Test("a serial beyond now + the margin is refused (2^64-1 would lock the agent out forever); up to it passes")
    func serialBound() {
        let limit = EnvelopeVerifier.serialLimit(now: now, margin: NK3Wire.serialMargin)
        #expect(limit == timeSerial + UInt64(NK3Wire.serialMargin * 1000))
        let confirm = Command.confirm(ConfirmCommand(applySerial: 1))
        #expect(verify(confirm, serial: UInt64.max) == .serialOutOfRange(serial: UInt64.max, limit: limit))
        #expect(verify(confirm, serial: limit + 1) == .serialOutOfRange(serial: limit + 1, limit: limit))
        #expect(verify(confirm, serial: limit) == nil)
        #expect(verify(confirm, serial: 1) == nil, "small serials (tests, a fresh cluster) still pass")
        // Refused before the replay check: such a serial never becomes the last accepted one.
        #expect(verify(confirm, serial: UInt64.max, last: 5)?.wireError.code == .serialOutOfRange)
        #expect(EnvelopeError.serialOutOfRange(serial: 9, limit: 8).wireError.httpStatus == 403)
        // An hour later, the same serial is fine: the bound moves with the agent's clock.
        let later = EnvelopeVerifier.serialLimit(now: now.addingTimeInterval(3600), margin: NK3Wire.serialMargin)
        #expect(later > limit)
    }
}
