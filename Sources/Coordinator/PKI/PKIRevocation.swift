import Foundation
import NK3Common
import NK3Protocol
import X509

/// One revoked client certificate, as `revoked.json` records it.
public struct PKIRevocation: Codable, Sendable, Hashable {
    /// The client name (`clients/<name>.crt`).
    public var name: String
    /// `serial:HEX` (see `RevocationList`).
    public var serial: String
    /// `sha256:HEX` of the certificate's DER.
    public var sha256: String
    /// When it was revoked.
    public var revokedAt: Date

    /// Makes a record.
    public init(name: String, serial: String, sha256: String, revokedAt: Date) {
        self.name = name
        self.serial = serial
        self.sha256 = sha256
        self.revokedAt = revokedAt
    }
}

extension PKIStore {
    /// `revoked.json`: the client certificates `nk3 certs revoke` revoked, newest last.
    public var revokedListPath: String { (directory as NSString).appendingPathComponent("revoked.json") }

    /// The revoked certificates (empty without a `revoked.json`).
    public func revocations() throws -> [PKIRevocation] {
        guard SecureFiles.exists(revokedListPath) else { return [] }
        do {
            return try CanonicalJSON.decode([PKIRevocation].self, from: try SecureFiles.read(revokedListPath))
        } catch {
            throw PKIError(.corrupt, "cannot read \(revokedListPath): \(error)")
        }
    }

    /// The deny-list entries for the agents' `revokedCertificates` (serial and fingerprint of each revocation).
    public func revokedCertificateEntries() throws -> [String] {
        try revocations().flatMap { [$0.serial, $0.sha256] }
    }

    /// Revokes the client certificate `clients/<name>.crt`: records its serial and fingerprint in `revoked.json` and
    /// renames its files to `<name>.crt.revoked` / `<name>.key.revoked` (so it is no longer used, and a new one may be
    /// issued under the same name). Agents refuse it once their configuration carries the new deny-list.
    @discardableResult
    public func revokeClient(name: String, now: Date = Date()) throws -> PKIRevocation {
        try Self.validate(name: name, what: "client name")
        _ = try loadCA()  // a PKI must exist
        let files = clientFiles(name: name)
        guard SecureFiles.exists(files.certificatePath) else {
            throw PKIError(.notInitialized, "no client certificate at \(files.certificatePath) to revoke")
        }
        let certificate: Certificate
        do {
            certificate = try Certificate(pemEncoded: try SecureFiles.readText(files.certificatePath))
        } catch {
            throw PKIError(.corrupt, "cannot parse \(files.certificatePath): \(error)")
        }
        guard let fingerprint = RevocationList.fingerprint(certificate) else {
            throw PKIError(.corrupt, "cannot encode \(files.certificatePath)")
        }
        let record = PKIRevocation(
            name: name, serial: "serial:\(RevocationList.serialHex(certificate))", sha256: "sha256:\(fingerprint)",
            revokedAt: now)
        var list = try revocations()
        if !list.contains(where: { $0.sha256 == record.sha256 }) { list.append(record) }
        try SecureFiles.writeAtomically(try CanonicalJSON.encode(list), to: revokedListPath, permissions: 0o644)
        for path in [files.certificatePath, files.privateKeyPath] where SecureFiles.exists(path) {
            guard rename(path, path + ".revoked") == 0 else {
                throw PKIError(.corrupt, "revoked, but cannot rename \(path): \(String(cString: strerror(errno)))")
            }
        }
        return record
    }
}
