#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NIOCore
import NIOHTTP1
import NIOSSL
import X509

/// One HTTP request as the server hands it to its handler: fully read, within the size limits.
public struct HTTPServerRequest: Sendable {
    /// Request method.
    public var method: HTTPMethod
    /// The request target as sent (path and query).
    public var uri: String
    /// The path part of `uri`, not percent-decoded.
    public var path: String
    /// Query parameters, percent-decoded (`+` read as a space); the last of repeated names wins.
    public var query: [String: String]
    /// Request headers.
    public var headers: HTTPHeaders
    /// The whole request body.
    public var body: ByteBuffer
    /// The client certificate, verified against the server's trust roots during the TLS handshake
    /// (nil without TLS or when the client presented none).
    public var clientCertificate: Certificate?

    /// Makes a request (the server does this; tests of handlers may too).
    public init(
        method: HTTPMethod, uri: String, headers: HTTPHeaders = [:], body: ByteBuffer = ByteBuffer(),
        clientCertificate: Certificate? = nil
    ) {
        self.method = method
        self.uri = uri
        let (path, query) = HTTPServerRequest.split(uri: uri)
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.clientCertificate = clientCertificate
    }

    /// Splits a request target into its path and its decoded query parameters.
    public static func split(uri: String) -> (path: String, query: [String: String]) {
        guard let q = uri.firstIndex(of: "?") else { return (uri, [:]) }
        var query: [String: String] = [:]
        for pair in uri[uri.index(after: q)...].split(separator: "&") where !pair.isEmpty {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ s: Substring) -> String {
                let plus = String(s.map { $0 == "+" ? " " : $0 })
                return percentDecoded(plus) ?? plus
            }
            query[decode(kv[0])] = kv.count > 1 ? decode(kv[1]) : ""
        }
        return (String(uri[..<q]), query)
    }

    /// `text` with its `%XX` escapes decoded, or nil if an escape is malformed or the bytes are not UTF-8
    /// (as Foundation's `removingPercentEncoding`, which FoundationEssentials does not have).
    public static func percentDecoded(_ text: String) -> String? {
        func hex(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        let utf8 = Array(text.utf8)
        guard utf8.contains(UInt8(ascii: "%")) else { return text }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(utf8.count)
        var i = 0
        while i < utf8.count {
            if utf8[i] == UInt8(ascii: "%") {
                guard i + 2 < utf8.count, let hi = hex(utf8[i + 1]), let lo = hex(utf8[i + 2]) else { return nil }
                bytes.append(hi << 4 | lo)
                i += 3
            } else {
                bytes.append(utf8[i])
                i += 1
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }
}

/// The handler's answer.
public struct HTTPServerResponse: Sendable {
    /// What is sent after the head.
    public enum Body: Sendable {
        /// A complete body, sent with a Content-Length.
        case bytes(ByteBuffer)
        /// A body sent in chunks as the stream yields them (chunked transfer encoding), e.g. a Kubernetes
        /// `?watch=true` response. The response ends when the stream finishes; the stream is cancelled
        /// (its `onTermination` runs) when the client goes away or the server shuts down.
        case stream(AsyncStream<ByteBuffer>)
    }

    /// Status code.
    public var status: HTTPResponseStatus
    /// Response headers (Content-Length / Transfer-Encoding are set by the server).
    public var headers: HTTPHeaders
    /// The body.
    public var body: Body
    /// Called once the response has been written out (for `Connection: close`, once the sending side is closed
    /// too), or once writing it failed: what must not happen before the client has its answer (a reboot).
    public var afterSent: (@Sendable () -> Void)?

    /// Makes a response.
    public init(status: HTTPResponseStatus, headers: HTTPHeaders = [:], body: Body = .bytes(ByteBuffer())) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A JSON response (`Content-Type: application/json`) encoded with `encoder`; a value that fails to
    /// encode yields a 500 with a plain-text message.
    public static func json<T: Encodable>(
        _ status: HTTPResponseStatus, _ value: T, encoder: JSONEncoder = JSONEncoder()
    ) -> HTTPServerResponse {
        do {
            let data = try encoder.encode(value)
            return HTTPServerResponse(
                status: status, headers: ["Content-Type": "application/json"], body: .bytes(ByteBuffer(bytes: data)))
        } catch {
            return .text(.internalServerError, "cannot encode response: \(error)\n")
        }
    }

    /// A plain-text response (`text/plain; charset=utf-8`).
    public static func text(_ status: HTTPResponseStatus, _ text: String, contentType: String = "text/plain; charset=utf-8")
        -> HTTPServerResponse
    {
        HTTPServerResponse(
            status: status, headers: ["Content-Type": contentType], body: .bytes(ByteBuffer(string: text)))
    }
}
