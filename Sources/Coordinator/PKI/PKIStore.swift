import Crypto
import Foundation
import NIOSSL
import NK3Common
import NK3Protocol

/// Why a PKI operation failed.
public struct PKIError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Stable error codes.
    public enum Code: String, Sendable, Hashable {
        /// `initialize` found an existing PKI.
        case alreadyInitialized = "already_initialized"
        /// No PKI in the directory (run `nk3 certs init`).
        case notInitialized = "not_initialized"
        /// A certificate for this name exists (pass `overwrite` / `--force` to re-issue).
        case alreadyExists = "already_exists"
        /// A node or client name that cannot be a file name.
        case invalidName = "invalid_name"
        /// A file exists but cannot be parsed or does not match its pair.
        case corrupt
    }

    /// What went wrong.
    public var code: Code
    /// What went wrong and how to fix it.
    public var message: String

    /// Makes an error.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

/// Paths of one issued certificate and its key.
public struct IssuedFiles: Sendable, Hashable {
    /// The certificate (PEM, 0644).
    public var certificatePath: String
    /// The private key (PEM, 0600).
    public var privateKeyPath: String
}

/// A cluster's PKI on disk (default `certs/<cluster>/`):
///
/// ```
/// ca.crt  ca.key                 cluster CA (ECDSA P-256); ca.key is secret
/// signing.key  signing.pub       Ed25519 envelope signing key (base64 of 32 raw bytes each); .key is secret
/// clients/<name>.crt|.key        client certificates with a role (operator, reader)
/// agents/<node>.crt|.key         agent server certificates (SAN: node hostname + addresses)
/// ```
///
/// Keys are written 0600 and refused when group or others can read them.
public struct PKIStore: Sendable {
    /// The PKI directory.
    public let directory: String
    /// The options that select this PKI in `nk3 certs` commands (` -i FILE` or ` --dir DIR`), so that the commands
    /// hints print work when copied.
    public let hintFlags: String

    /// Uses the PKI in `directory`. `hintFlags` are the `nk3 certs` options hints add to select it (default
    /// ` --dir DIRECTORY`; a caller that knows the inventory passes ` -i INVENTORY`).
    public init(directory: String, hintFlags: String? = nil) {
        self.directory = directory
        self.hintFlags = hintFlags ?? " --dir \(ShellWord.quoted(directory))"
    }

    /// The PKI an inventory names (`pki_dir`, default `certs/<cluster_name>` next to it); hints name the inventory.
    public init(inventory: Inventory, inventoryPath: String) {
        self.init(directory: inventory.pkiDirectory, hintFlags: " -i \(ShellWord.quoted(inventoryPath))")
    }

    /// The command that creates this PKI, as hints print it.
    public var initCommand: String { "nk3 certs init\(hintFlags)" }

    /// The default directory of a cluster's PKI: `<base>/<cluster>`.
    public static func defaultDirectory(cluster: String, base: String = "certs") -> String {
        (base as NSString).appendingPathComponent(cluster)
    }

    // MARK: paths

    /// `ca.crt`.
    public var caCertificatePath: String { path("ca.crt") }
    /// `ca.key` (secret).
    public var caPrivateKeyPath: String { path("ca.key") }
    /// `signing.key` (secret).
    public var signingKeyPath: String { path("signing.key") }
    /// `signing.pub`: what the NixOS module's `signingPublicKeys` takes.
    public var signingPublicKeyPath: String { path("signing.pub") }
    /// An agent's certificate and key paths.
    public func agentFiles(node: String) -> IssuedFiles {
        IssuedFiles(certificatePath: path("agents/\(node).crt"), privateKeyPath: path("agents/\(node).key"))
    }
    /// A client's certificate and key paths.
    public func clientFiles(name: String) -> IssuedFiles {
        IssuedFiles(certificatePath: path("clients/\(name).crt"), privateKeyPath: path("clients/\(name).key"))
    }

    private func path(_ relative: String) -> String { (directory as NSString).appendingPathComponent(relative) }

    // MARK: initialize

    /// Creates the CA, the signing key and an operator client certificate (`clients/<operatorName>`).
    /// Refuses to touch an existing PKI. Everything is written into a temporary sibling directory first
    /// and moved into place at the end, so an interrupted init leaves no half PKI.
    @discardableResult
    public func initialize(cluster: String, operatorName: String = "operator", now: Date = Date()) throws -> IssuedFiles {
        try Self.validate(name: operatorName, what: "client name")
        let fm = FileManager.default
        if SecureFiles.exists(directory) {
            let contents = (try? fm.contentsOfDirectory(atPath: directory)) ?? ["?"]
            guard contents.isEmpty else {
                throw PKIError(
                    .alreadyInitialized,
                    "\(directory) already holds a PKI (or other files); refusing to overwrite it. Use another --dir, "
                        + "or move it away if you really mean to start a new cluster CA (every agent and client "
                        + "certificate would have to be re-issued)")
            }
        }
        let parent = (directory as NSString).deletingLastPathComponent
        try SecureFiles.createDirectory(parent.isEmpty ? "." : parent)
        let staging = PKIStore(directory: "\(directory).init-\(UUID().uuidString.prefix(8))")
        do {
            try SecureFiles.createDirectory(staging.directory, permissions: 0o700)
            let ca = try ClusterCA.create(cluster: cluster, now: now)
            try SecureFiles.writePrivateKey(ca.privateKeyPEM, to: staging.caPrivateKeyPath)
            try SecureFiles.writeAtomically(try ca.certificatePEM, to: staging.caCertificatePath, overwrite: false)
            let signing = Curve25519.Signing.PrivateKey()
            try SecureFiles.writePrivateKey(signing.rawRepresentation.base64EncodedString() + "\n", to: staging.signingKeyPath)
            try SecureFiles.writeAtomically(
                signing.publicKey.rawRepresentation.base64EncodedString() + "\n", to: staging.signingPublicKeyPath,
                overwrite: false)
            _ = try staging.issueClient(name: operatorName, role: .operator, now: now)
            if SecureFiles.exists(directory) { rmdir(directory) }  // empty, checked above
            guard rename(staging.directory, directory) == 0 else {
                throw PKIError(.alreadyInitialized, "cannot move the new PKI into \(directory): \(String(cString: strerror(errno)))")
            }
            try SecureFiles.syncDirectory(parent.isEmpty ? "." : parent)
        } catch {
            try? fm.removeItem(atPath: staging.directory)
            throw error
        }
        return clientFiles(name: operatorName)
    }

    // MARK: issue

    /// Issues `agents/<node>.crt|.key`: a server certificate for the node's hostname and addresses.
    @discardableResult
    public func issueAgent(node: String, addresses: [String], overwrite: Bool = false, now: Date = Date()) throws
        -> IssuedFiles
    {
        try Self.validate(name: node, what: "node name")
        let ca = try loadCA()
        let files = agentFiles(node: node)
        try refuseExisting(files, overwrite: overwrite, hint: "nk3 certs issue-agent\(hintFlags) \(node) --force")
        let issued = try ca.issueAgent(hostname: node, addresses: addresses, now: now)
        try write(issued, to: files, subdirectory: "agents")
        return files
    }

    /// Issues `clients/<name>.crt|.key` with `role`.
    @discardableResult
    public func issueClient(
        name: String, role: ClientRole, overwrite: Bool = false, now: Date = Date(),
        validity: TimeInterval = TimeInterval(ClusterCA.defaultClientValidityDays) * 86400
    ) throws -> IssuedFiles {
        try Self.validate(name: name, what: "client name")
        let ca = try loadCA()
        let files = clientFiles(name: name)
        try refuseExisting(files, overwrite: overwrite, hint: "nk3 certs issue-client\(hintFlags) \(name) --role \(role.rawValue) --force")
        let issued = try ca.issueClient(name: name, role: role, now: now, validity: validity)
        try write(issued, to: files, subdirectory: "clients")
        return files
    }

    private func refuseExisting(_ files: IssuedFiles, overwrite: Bool, hint: String) throws {
        guard !overwrite else { return }
        if SecureFiles.exists(files.certificatePath) || SecureFiles.exists(files.privateKeyPath) {
            throw PKIError(
                .alreadyExists, "\(files.certificatePath) already exists; to re-issue it (e.g. renewal) run `\(hint)`")
        }
    }

    private func write(_ issued: IssuedCertificate, to files: IssuedFiles, subdirectory: String) throws {
        try SecureFiles.createDirectory(path(subdirectory), permissions: 0o700)
        try SecureFiles.writePrivateKey(issued.privateKeyPEM, to: files.privateKeyPath, overwrite: true)
        try SecureFiles.writeAtomically(issued.certificatePEM, to: files.certificatePath, overwrite: true)
    }

    // MARK: load

    /// Loads the CA (key checked 0600).
    public func loadCA() throws -> ClusterCA {
        guard SecureFiles.exists(caCertificatePath) else {
            throw PKIError(.notInitialized, "no cluster CA at \(caCertificatePath); run `\(initCommand)` first")
        }
        let certificate = try SecureFiles.readText(caCertificatePath)
        let key = try SecureFiles.readPrivateKey(caPrivateKeyPath)
        do {
            return try ClusterCA(certificatePEM: certificate, privateKeyPEM: key)
        } catch {
            throw PKIError(.corrupt, "cannot load the CA from \(caCertificatePath) and \(caPrivateKeyPath): \(error)")
        }
    }

    /// The CA certificate as trust roots for TLS.
    public func trustRoots() throws -> [NIOSSLCertificate] {
        guard SecureFiles.exists(caCertificatePath) else {
            throw PKIError(.notInitialized, "no cluster CA at \(caCertificatePath); run `\(initCommand)` first")
        }
        return try TLSConfigs.trustRoots(path: caCertificatePath)
    }

    /// The envelope signer (key checked 0600).
    public func loadSigner() throws -> EnvelopeSigner {
        guard SecureFiles.exists(signingKeyPath) else {
            throw PKIError(.notInitialized, "no signing key at \(signingKeyPath); run `\(initCommand)` first")
        }
        let text = try SecureFiles.readPrivateKey(signingKeyPath).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let raw = Data(base64Encoded: text), raw.count == 32,
            let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: raw)
        else {
            throw PKIError(.corrupt, "\(signingKeyPath) is not base64 of a 32-byte Ed25519 private key")
        }
        return EnvelopeSigner(privateKey: key)
    }

    /// The contents of `signing.pub`: base64 of the 32 raw public key bytes.
    public func signingPublicKey() throws -> String {
        let text = try SecureFiles.readText(signingPublicKeyPath).trimmingCharacters(in: .whitespacesAndNewlines)
        do {
            _ = try Curve25519.Signing.PublicKey(base64: text)
        } catch {
            throw PKIError(.corrupt, "\(signingPublicKeyPath) is not base64 of a 32-byte Ed25519 public key")
        }
        return text
    }

    /// A client's TLS identity (key checked 0600).
    public func clientIdentity(name: String) throws -> TLSIdentity {
        try identity(clientFiles(name: name), hint: "nk3 certs issue-client\(hintFlags) \(name) --role operator")
    }

    private func identity(_ files: IssuedFiles, hint: String) throws -> TLSIdentity {
        guard SecureFiles.exists(files.certificatePath) else {
            throw PKIError(.notInitialized, "no certificate at \(files.certificatePath); run `\(hint)`")
        }
        return try TLSIdentity.load(certificatePath: files.certificatePath, privateKeyPath: files.privateKeyPath)
    }

    /// Names become file names: `[A-Za-z0-9._-]`, no leading dot, at most 128 characters.
    static func validate(name: String, what: String) throws {
        guard ApplyBundle.isValidFileName(name) else {
            throw PKIError(
                .invalidName, "invalid \(what) '\(name)': use letters, digits, '.', '_' and '-' (no leading dot, no '/')")
        }
    }
}
