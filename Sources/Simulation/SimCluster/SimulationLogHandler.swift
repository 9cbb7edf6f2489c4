import Logging

/// Wraps another log handler and prefixes every message with `[simulation]`, so whatever the simulated cluster
/// (and the real agents running inside it) logs is labelled as a simulation.
public struct SimulationLogHandler: LogHandler {
    private var inner: any LogHandler

    /// Wraps `inner`.
    public init(wrapping inner: any LogHandler) { self.inner = inner }

    /// A logger like `logger` whose messages all start with `[simulation]` (unchanged if they already do).
    public static func labelled(_ logger: Logger) -> Logger {
        if logger.handler is SimulationLogHandler { return logger }
        let inner = logger.handler
        return Logger(label: logger.label, factory: { _ in SimulationLogHandler(wrapping: inner) })
    }

    public var logLevel: Logger.Level {
        get { inner.logLevel }
        set { inner.logLevel = newValue }
    }

    public var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    public var metadataProvider: Logger.MetadataProvider? {
        get { inner.metadataProvider }
        set { inner.metadataProvider = newValue }
    }

    public func log(event: LogEvent) {
        var e = event
        let text = "\(event.message)"
        if !text.hasPrefix("[simulation]") { e.message = "[simulation] \(text)" }
        inner.log(event: e)
    }
}
