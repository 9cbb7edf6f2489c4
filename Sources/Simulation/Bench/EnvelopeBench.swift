import Crypto
import NK3Protocol

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Scenario `envelope`: `EnvelopeVerifier.verify(envelopeJSON:…)` of an apply envelope whose bundle carries
/// 100 KB of configuration files — what the agent does with every mutating request before anything else.
/// Also times its parts (envelope JSON parse with the base64 payload, SHA-256 of the payload, the Ed25519
/// check over context + digest, payload decode) to show where the time goes.
struct EnvelopeBench {
    let options: BenchRunner.Options

    /// A bundle of `bytes` of Nix-looking text over a few files.
    static func bundle(bytes: Int) -> ApplyBundle {
        let line = "  services.example.setting-with-a-long-name = \"some value that looks like configuration\";\n"
        var files: [String: String] = [:]
        let perFile = bytes / 4
        for name in ["configuration.nix", "k3s.nix", "network.nix", "storage.nix"] {
            var text = "{ config, lib, pkgs, ... }:\n{\n"
            while text.utf8.count + line.utf8.count + 2 < perFile { text += line }
            files[name] = text + "}\n"
        }
        return ApplyBundle(files: files, action: .boot, confirmTimeoutSeconds: 600)
    }

    func run(into result: inout BenchScenarioResult) throws {
        let key = Curve25519.Signing.PrivateKey()
        let signer = EnvelopeSigner(privateKey: key)
        let verifier = EnvelopeVerifier(node: "node-1", trustedKeys: [key.publicKey])
        let bundle = Self.bundle(bytes: 100 * 1024)
        let bundleBytes = bundle.files.values.map(\.utf8.count).reduce(0, +)
        let envelope = try signer.sign(.apply(bundle), node: "node-1", serial: 42, now: Date(), validity: 3600)
        let json = try CanonicalJSON.encode(envelope)
        let now = Date()
        // Warm up (first decode pays for lazy initialisation).
        for _ in 0..<5 { _ = try verifier.verify(envelopeJSON: json, lastAcceptedSerial: 41, now: now) }

        var full: [Double] = []
        var parse: [Double] = []
        var digest: [Double] = []
        var signature: [Double] = []
        var payload: [Double] = []
        let clock = ContinuousClock()
        for _ in 0..<options.envelopeRuns {
            var t = clock.now
            let p = try verifier.verify(envelopeJSON: json, lastAcceptedSerial: 41, now: now)
            full.append(t.duration(to: clock.now).milliseconds)
            precondition(p.serial == 42)

            t = clock.now
            let e = try SignedEnvelope(json: json)
            parse.append(t.duration(to: clock.now).milliseconds)

            t = clock.now
            let message = SignedEnvelope.signedMessage(for: e.payload)
            digest.append(t.duration(to: clock.now).milliseconds)

            t = clock.now
            let ok = key.publicKey.isValidSignature(e.signature, for: message)
            signature.append(t.duration(to: clock.now).milliseconds)
            precondition(ok)

            t = clock.now
            _ = try CommandPayload(wireBytes: e.payload)
            payload.append(t.duration(to: clock.now).milliseconds)
        }
        result.figures.append(
            BenchFigure(
                "verify(envelopeJSON:) total", unit: "ms", samples: full, target: "≤ 0.3 ms", met: { $0 <= 0.3 }))
        result.figures.append(BenchFigure("  part: envelope JSON parse + base64", unit: "ms", samples: parse))
        result.figures.append(BenchFigure("  part: SHA-256 of the payload", unit: "ms", samples: digest))
        result.figures.append(BenchFigure("  part: Ed25519 check (context + digest)", unit: "ms", samples: signature))
        result.figures.append(BenchFigure("  part: payload decode (header + UTF-8)", unit: "ms", samples: payload))
        result.notes.append(
            "bundle \(bundleBytes / 1024) KiB of files in 4 files; payload \(envelope.payload.count / 1024) KiB "
                + "(JSON header line + raw files); envelope JSON \(json.count / 1024) KiB (payload is base64)")
    }
}
