import Foundation

/// An error from the Kubernetes client: a code to match on, a message that says what went wrong and how to
/// fix it, and — when the API answered — the HTTP status and the API's own `Status` object.
public struct KubeError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure. Match on this, never on the message.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let raw: String
        private init(_ raw: String) { self.raw = raw }
        /// 404: the object does not exist.
        public static let notFound = Code("notFound")
        /// 410: a watch or list continue token is too old (re-list, docs/UPSTREAM.md#watch).
        public static let expired = Code("expired")
        /// 409: stale resourceVersion (or AlreadyExists on create).
        public static let conflict = Code("conflict")
        /// 403: RBAC or the API refused (e.g. a PDB with negative disruptionsAllowed).
        public static let forbidden = Code("forbidden")
        /// 401: bad or missing credentials.
        public static let unauthorized = Code("unauthorized")
        /// 429: a PodDisruptionBudget blocks an eviction, or API priority and fairness throttling.
        public static let tooManyRequests = Code("tooManyRequests")
        /// 400/415/422: the request was invalid.
        public static let invalid = Code("invalid")
        /// 5xx (or any other unexpected status).
        public static let server = Code("server")
        /// Connection, TLS or timeout below HTTP.
        public static let transport = Code("transport")
        /// The answer could not be decoded.
        public static let decode = Code("decode")
        /// A kubeconfig problem.
        public static let config = Code("config")
        /// A wait (drain, pod deletion) ran past its deadline.
        public static let timeout = Code("timeout")
        /// An operation nk3 refuses by rule (e.g. uncordon a node someone else cordoned; drain unmanaged pods).
        public static let refused = Code("refused")
        /// A drain that cannot succeed by waiting: pods that would be lost, a pod under several budgets, or a
        /// PodDisruptionBudget that will not (or did not, within the timeout) allow an eviction.
        public static let drainRefused = Code("drainRefused")
        /// The code name.
        public var description: String { raw }
    }

    /// The code.
    public var code: Code
    /// What went wrong, and how to fix it.
    public var message: String
    /// HTTP status, when the API answered.
    public var httpStatus: Int?
    /// The API's Status object, when the body was one.
    public var status: KubeStatus?
    /// The `Retry-After` the server asked for.
    public var retryAfterSeconds: Int?
    /// For drain timeouts: the PodDisruptionBudget (`namespace/name`) that blocked the last eviction.
    public var blockingPodDisruptionBudget: String?
    /// A description of the underlying error, if any.
    public var underlying: String?

    /// Makes an error.
    public init(
        _ code: Code, _ message: String, httpStatus: Int? = nil, status: KubeStatus? = nil,
        retryAfterSeconds: Int? = nil, blockingPodDisruptionBudget: String? = nil, underlying: String? = nil
    ) {
        self.code = code
        self.message = message
        self.httpStatus = httpStatus
        self.status = status
        self.retryAfterSeconds = retryAfterSeconds
        self.blockingPodDisruptionBudget = blockingPodDisruptionBudget
        self.underlying = underlying
    }

    /// Whether the API's Status lists a cause with this `reason` (client-go `apierrors.HasStatusCause`), e.g.
    /// `NamespaceTerminating`.
    public func hasCause(_ reason: String) -> Bool {
        status?.details?.causes?.contains { $0.reason == reason } ?? false
    }

    /// `kube <code>: message`.
    public var description: String {
        var s = "kube \(code): \(message)"
        if let underlying { s += " (\(underlying))" }
        return s
    }

    /// The code an HTTP status maps to (docs/UPSTREAM.md#api-errors).
    public static func code(forHTTPStatus status: Int) -> Code {
        switch status {
        case 401: return .unauthorized
        case 403: return .forbidden
        case 404: return .notFound
        case 410: return .expired
        case 409: return .conflict
        case 429: return .tooManyRequests
        case 400, 405, 406, 413, 415, 422: return .invalid
        default: return .server
        }
    }
}
