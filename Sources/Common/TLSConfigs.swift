#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NIOSSL
import X509

/// A certificate chain and its private key, ready for NIOSSL.
public struct TLSIdentity: Sendable {
    /// Leaf first.
    public var certificateChain: [NIOSSLCertificate]
    /// The leaf's private key.
    public var privateKey: NIOSSLPrivateKey

    /// Makes an identity from already parsed values.
    public init(certificateChain: [NIOSSLCertificate], privateKey: NIOSSLPrivateKey) {
        self.certificateChain = certificateChain
        self.privateKey = privateKey
    }

    /// Parses PEM text (certificate chain, leaf first; PKCS#8 or SEC1 private key).
    public init(certificatePEM: String, privateKeyPEM: String) throws {
        self.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8))
        guard !certificateChain.isEmpty else { throw TLSConfigError("no certificate found in the PEM text") }
        self.privateKey = try NIOSSLPrivateKey(bytes: Array(privateKeyPEM.utf8), format: .pem)
    }

    /// Loads a certificate file and a private key file; the key file must not be readable by group or
    /// others (see `SecureFiles.readPrivateKey`).
    public static func load(certificatePath: String, privateKeyPath: String) throws -> TLSIdentity {
        let cert = try SecureFiles.readText(certificatePath)
        let key = try SecureFiles.readPrivateKey(privateKeyPath)
        do {
            return try TLSIdentity(certificatePEM: cert, privateKeyPEM: key)
        } catch let error as TLSConfigError {
            throw TLSConfigError("\(certificatePath): \(error.message)")
        } catch {
            throw TLSConfigError("cannot parse \(certificatePath) / \(privateKeyPath): \(error)")
        }
    }
}

/// A TLS configuration problem (unparsable PEM, empty trust roots).
public struct TLSConfigError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong and how to fix it.
    public var message: String
    /// Makes an error.
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The TLS settings of nk3: TLS 1.3 only, peers always verified against the cluster CA.
///
/// There is deliberately no way to turn verification off here, not even for tests: tests mint a fresh CA.
public enum TLSConfigs {
    /// Parses one or more PEM certificates (e.g. `ca.crt`) as trust roots.
    public static func trustRoots(pem: String) throws -> [NIOSSLCertificate] {
        let certs = try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8))
        guard !certs.isEmpty else { throw TLSConfigError("no CA certificate found in the PEM text") }
        return certs
    }

    /// Loads trust roots from a PEM file.
    public static func trustRoots(path: String) throws -> [NIOSSLCertificate] {
        do {
            return try trustRoots(pem: try SecureFiles.readText(path))
        } catch let error as SecureFileError {
            throw error
        } catch {
            throw TLSConfigError("cannot parse CA certificate \(path): \(error)")
        }
    }

    /// Server side: TLS 1.3 minimum, our certificate, and a client certificate chaining to `clientCA`
    /// REQUIRED (`requireClientCertificate: false` still verifies a presented certificate, for servers such
    /// as a fake Kubernetes API that also accept bearer tokens).
    public static func server(
        identity: TLSIdentity, clientCA: [NIOSSLCertificate], requireClientCertificate: Bool = true
    ) -> TLSConfiguration {
        var config = TLSConfiguration.makeServerConfiguration(
            certificateChain: identity.certificateChain.map { .certificate($0) },
            privateKey: .privateKey(identity.privateKey))
        config.minimumTLSVersion = .tlsv13
        config.trustRoots = .certificates(clientCA)
        // A server cannot check a client's "hostname": chain verification is what authenticates it.
        config.certificateVerification = requireClientCertificate ? .noHostnameVerification : .optionalVerification
        return config
    }

    /// A server `NIOSSLContext`; see `server(identity:clientCA:requireClientCertificate:)`.
    public static func serverContext(
        identity: TLSIdentity, clientCA: [NIOSSLCertificate], requireClientCertificate: Bool = true
    ) throws -> NIOSSLContext {
        try NIOSSLContext(
            configuration: server(
                identity: identity, clientCA: clientCA, requireClientCertificate: requireClientCertificate))
    }

    /// Client side: TLS 1.3 minimum, the server certificate verified against `trustRoots` and against the
    /// expected name (pass it as the handler's `serverHostname`; for an IP address, NIOSSL checks the
    /// connected peer address against the certificate's IP SANs). `identity` is the client certificate.
    public static func client(trustRoots: [NIOSSLCertificate], identity: TLSIdentity?) -> TLSConfiguration {
        var config = TLSConfiguration.makeClientConfiguration()
        config.minimumTLSVersion = .tlsv13
        config.trustRoots = .certificates(trustRoots)
        config.certificateVerification = .fullVerification
        if let identity {
            config.certificateChain = identity.certificateChain.map { .certificate($0) }
            config.privateKey = .privateKey(identity.privateKey)
        }
        return config
    }

    /// A client `NIOSSLContext`; see `client(trustRoots:identity:)`.
    public static func clientContext(trustRoots: [NIOSSLCertificate], identity: TLSIdentity?) throws -> NIOSSLContext {
        try NIOSSLContext(configuration: client(trustRoots: trustRoots, identity: identity))
    }

    /// Converts a NIOSSL certificate (e.g. the verified peer certificate) to swift-certificates' type.
    public static func certificate(from nio: NIOSSLCertificate) throws -> Certificate {
        try Certificate(derEncoded: try nio.toDERBytes())
    }
}
