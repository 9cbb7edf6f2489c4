import NIOCore
import NIOTLS
import Synchronization

/// How many TLS connections an `HTTPSServer` holds, and whose: the defence against connection starvation.
///
/// A connection is *handshaking* from its accept until its TLS handshake completes (the client certificate verified
/// against the trust roots), then *established*. The two pools are capped separately, so connections that never
/// complete a handshake (plain TCP, a stalled ClientHello, a client without a certificate) can never take the
/// capacity of clients that do: an operator whose handshake completes always finds room among the established.
///
/// Handshaking connections are limited per source address, and when the pool is full the oldest handshaking
/// connection of the address that holds the most is closed to make room (an address that holds the most cannot
/// displace others: its own new connection is refused instead). A flood from a few addresses thus never keeps a
/// client at another address from starting its handshake; each handshaking connection also ends after
/// `HTTPServerLimits.handshakeTimeout`.
final class ConnectionAdmission: Sendable {
    /// Why a connection was refused or closed (for metrics and tests).
    enum Refusal: String, CaseIterable, Sendable {
        /// Its address already holds `maxHandshakesPerAddress` handshaking connections.
        case perAddress = "per_address"
        /// The handshaking pool was full and its address held the most.
        case handshakePool = "handshake_pool"
        /// Closed to make room for a connection from an address holding fewer.
        case evicted
        /// The handshake did not complete within the handshake timeout.
        case handshakeTimeout = "handshake_timeout"
        /// The established pool was full when its handshake completed.
        case establishedPool = "established_pool"
    }

    private struct Handshaking {
        var address: String
        var sequence: UInt64
        var channel: any Channel
    }

    private struct State {
        var handshaking: [ObjectIdentifier: Handshaking] = [:]
        var perAddress: [String: Int] = [:]
        var established: Set<ObjectIdentifier> = []
        var sequence: UInt64 = 0
        var refusals: [String: Int] = [:]
        /// Connections that completed their handshake and got a place in the established pool, since the start.
        var establishedTotal = 0
    }

    private let limits: HTTPServerLimits
    private let state = Mutex(State())

    init(limits: HTTPServerLimits) {
        self.limits = limits
    }

    /// Admits a newly accepted connection into the handshaking pool, or says why not. May close another
    /// (evicted) connection to make room.
    func admit(_ channel: any Channel) -> Refusal? {
        let address = channel.remoteAddress?.ipAddress ?? "?"
        let id = ObjectIdentifier(channel)
        var victim: (any Channel)?
        let refusal = state.withLock { s -> Refusal? in
            let mine = s.perAddress[address, default: 0]
            if mine >= limits.maxHandshakesPerAddress {
                s.refusals[Refusal.perAddress.rawValue, default: 0] += 1
                return .perAddress
            }
            if s.handshaking.count >= limits.maxHandshakes {
                // The address holding the most handshakes gives one up, unless that is the newcomer's own.
                guard let top = s.perAddress.max(by: { $0.value < $1.value }), top.value > mine + 1 else {
                    s.refusals[Refusal.handshakePool.rawValue, default: 0] += 1
                    return .handshakePool
                }
                let oldest = s.handshaking.filter { $0.value.address == top.key }.min { $0.value.sequence < $1.value.sequence }
                if let oldest {
                    Self.remove(oldest.key, from: &s)
                    victim = oldest.value.channel
                    s.refusals[Refusal.evicted.rawValue, default: 0] += 1
                }
            }
            s.sequence += 1
            s.handshaking[id] = Handshaking(address: address, sequence: s.sequence, channel: channel)
            s.perAddress[address, default: 0] += 1
            return nil
        }
        victim?.close(promise: nil)
        return refusal
    }

    /// Moves a connection whose handshake completed to the established pool; false (close it) if that is full.
    func promote(_ channel: any Channel) -> Bool {
        let id = ObjectIdentifier(channel)
        return state.withLock { s in
            guard s.handshaking[id] != nil else { return false }  // evicted or timed out meanwhile
            Self.remove(id, from: &s)
            guard s.established.count < limits.maxConnections else {
                s.refusals[Refusal.establishedPool.rawValue, default: 0] += 1
                return false
            }
            s.established.insert(id)
            s.establishedTotal += 1
            return true
        }
    }

    /// Counts a handshake timeout (the connection is closed by the caller).
    func timedOut() {
        state.withLock { $0.refusals[Refusal.handshakeTimeout.rawValue, default: 0] += 1 }
    }

    /// Forgets a closed connection.
    func release(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        state.withLock { s in
            Self.remove(id, from: &s)
            s.established.remove(id)
        }
    }

    /// Connections handshaking and established now.
    var counts: (handshaking: Int, established: Int) {
        state.withLock { ($0.handshaking.count, $0.established.count) }
    }

    /// Refusals by reason since the start.
    var refusals: [String: Int] { state.withLock { $0.refusals } }

    /// Connections established since the start: handshake completed (client certificate verified) and admitted
    /// to the established pool. Refused, timed-out, evicted and failed handshakes are not among them.
    var establishedTotal: Int { state.withLock { $0.establishedTotal } }

    private static func remove(_ id: ObjectIdentifier, from s: inout State) {
        guard let entry = s.handshaking.removeValue(forKey: id) else { return }
        let left = s.perAddress[entry.address, default: 1] - 1
        s.perAddress[entry.address] = left > 0 ? left : nil
    }
}

/// Sits after the TLS handler: closes the connection if its handshake has not completed within the handshake
/// timeout, and moves it to the established pool when it has.
final class HandshakeGate: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let admission: ConnectionAdmission
    private let timeout: TimeAmount
    private var timer: Scheduled<Void>?

    init(admission: ConnectionAdmission, timeout: TimeAmount) {
        self.admission = admission
        self.timeout = timeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let (admission, channel) = (self.admission, context.channel)
        timer = context.eventLoop.scheduleTask(in: timeout) {
            admission.timedOut()
            channel.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent {
            timer?.cancel()
            timer = nil
            guard admission.promote(context.channel) else {
                context.close(promise: nil)
                return
            }
        }
        context.fireUserInboundEventTriggered(event)
    }
}

/// On the listening channel, before the accepted connections reach the server's accept loop: admits each one
/// (`ConnectionAdmission.admit`) or closes it at once. A refused connection is never registered with the event loop,
/// gets no TLS state, no handler and no task: refusing costs little more than the accept itself, so the accept queue
/// drains fast under a flood and a legitimate connection waits behind few others.
final class AdmissionFilter: ChannelInboundHandler {
    typealias InboundIn = any Channel

    private let admission: ConnectionAdmission

    init(admission: ConnectionAdmission) {
        self.admission = admission
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let accepted = Self.unwrapInboundIn(data)
        guard admission.admit(accepted) == nil else {
            // As swift-nio's own ServerBootstrap does with a child it cannot initialise (AcceptHandler.closeAndFire).
            accepted.close(promise: nil)
            return
        }
        accepted.closeFuture.whenComplete { [admission] _ in admission.release(accepted) }
        context.fireChannelRead(data)
    }
}
