/// Limits that protect the server from large or slow clients.
public struct HTTPServerLimits: Sendable, Hashable {
    /// Largest request body accepted; a larger one is answered 413 and the connection closed. The body is
    /// never buffered beyond this.
    public var maxBodyBytes: Int
    /// Largest total size of the request head's header names and values (answered 400 by the parser and
    /// closed when exceeded).
    public var maxHeaderBytes: Int
    /// A connection with no request in progress and nothing read for this long is closed.
    public var idleTimeout: Duration
    /// A connection with an answer waiting to be written that the client has not read any of for this long is
    /// closed, after one to two such periods (a client that stops reading would otherwise hold the connection and
    /// the answer forever).
    public var writeTimeout: Duration
    /// Listen backlog.
    public var backlog: Int
    /// TLS only: a connection whose handshake has not completed this long after its accept is closed (separate from,
    /// and shorter than, the idle timeout).
    public var handshakeTimeout: Duration
    /// TLS only: most connections in their handshake at once (see `ConnectionAdmission`).
    public var maxHandshakes: Int
    /// TLS only: most connections in their handshake at once from one source address.
    public var maxHandshakesPerAddress: Int
    /// TLS only: most connections with a completed handshake at once; capacity the handshaking cannot take.
    public var maxConnections: Int

    /// Makes limits (defaults suit the agent: `NK3Wire.maxBodyBytes`-sized bodies; 256 + 512 connections stay well
    /// under a service's default 1,024 descriptors).
    public init(
        maxBodyBytes: Int = 4 * 1024 * 1024, maxHeaderBytes: Int = 16 * 1024, idleTimeout: Duration = .seconds(60),
        writeTimeout: Duration = .seconds(60), backlog: Int = 1024, handshakeTimeout: Duration = .seconds(10),
        maxHandshakes: Int = 256, maxHandshakesPerAddress: Int = 128, maxConnections: Int = 512
    ) {
        self.maxBodyBytes = maxBodyBytes
        self.maxHeaderBytes = maxHeaderBytes
        self.idleTimeout = idleTimeout
        self.writeTimeout = writeTimeout
        self.backlog = backlog
        self.handshakeTimeout = handshakeTimeout
        self.maxHandshakes = maxHandshakes
        self.maxHandshakesPerAddress = maxHandshakesPerAddress
        self.maxConnections = maxConnections
    }
}
