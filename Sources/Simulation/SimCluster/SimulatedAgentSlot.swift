import Foundation
import Logging
import NK3Agent
import Synchronization

/// One node's agent process in the simulated cluster: a REAL `AgentServer` + `ApplyEngine` (real mTLS, real
/// envelope checks, real persisted state machine) over a `SimulatedNode`. It stops when the node goes down
/// and starts again — a new process on THE SAME port over the persisted state — when the node has booted.
///
/// The state directory is snapshotted per process (`state-<k>`, copied from the previous one when that
/// process stops), as a disk is frozen at power-off: whatever the dead process might still do in memory
/// cannot reach the next boot's state. Operations are serialised in the order they were requested.
final class SimulatedAgentSlot: Sendable {
    struct Running: Sendable {
        var server: AgentServer
        var engine: ApplyEngine
        var alive: ProcessFlag
        var stateDir: String
    }

    struct State: Sendable {
        var port: Int
        /// Keeps this process's other stable-port binders off `port` while the agent is down (released with the slot).
        var portReservation: LoopbackSockets.PortReservation?
        var running: Running?
        /// Processes that started and served.
        var processes = 0
        /// Start attempts, failed ones included (numbers the state directories).
        var attempts = 0
        /// Starts that failed (e.g. the port was taken): systemd would retry them, so do `startRetrying`.
        var startFailures = 0
        /// TLS connections accepted by processes that have stopped.
        var connectionsOfStopped = 0
        var chain: Task<Void, Never>?
        var lastStateDir: String?
        var lastError: String?
    }

    /// Set false to kill a process's view of the node.
    final class ProcessFlag: Sendable {
        private let value = Mutex(true)
        var isAlive: Bool { value.withLock { $0 } }
        func kill() { value.withLock { $0 = false } }
    }

    let name: String
    let node: SimulatedNode
    let baseDirectory: String
    let makeConfig: @Sendable (_ port: Int, _ stateDir: String) -> AgentServerConfig
    let clock: any AgentClock
    let rebootDelay: Duration
    let logger: Logger
    let state: Mutex<State>

    init(
        name: String, node: SimulatedNode, baseDirectory: String, clock: any AgentClock, rebootDelay: Duration,
        logger: Logger, makeConfig: @escaping @Sendable (_ port: Int, _ stateDir: String) -> AgentServerConfig
    ) {
        self.name = name
        self.node = node
        self.baseDirectory = baseDirectory
        self.clock = clock
        self.rebootDelay = rebootDelay
        self.logger = logger
        self.makeConfig = makeConfig
        self.state = Mutex(State(port: 0))
    }

    /// The agent's port (0 before the first start).
    var port: Int { state.withLock { $0.port } }
    /// Whether an agent process serves now.
    var isRunning: Bool { state.withLock { $0.running != nil } }
    /// The engine of the running process (tests, diagnostics).
    var engine: ApplyEngine? { state.withLock { $0.running?.engine } }
    /// Number of agent processes that started and served so far (failed starts not counted).
    var processes: Int { state.withLock { $0.processes } }
    /// Number of starts that failed so far.
    var startFailures: Int { state.withLock { $0.startFailures } }
    /// TLS connections accepted by all of this node's agent processes so far (each one a handshake).
    var connectionsAccepted: Int {
        state.withLock { $0.connectionsOfStopped + ($0.running?.server.acceptedConnectionCount ?? 0) }
    }
    /// The last start failure, if any.
    var lastError: String? { state.withLock { $0.lastError } }

    /// Queues `op` after every operation queued before it; returns its task.
    @discardableResult
    func enqueue(_ op: @escaping @Sendable () async -> Void) -> Task<Void, Never> {
        state.withLock { s in
            let previous = s.chain
            let t = Task {
                await previous?.value
                await op()
            }
            s.chain = t
            return t
        }
    }

    /// Waits for every queued operation.
    func settle() async {
        while true {
            let t = state.withLock { $0.chain }
            await t?.value
            if state.withLock({ $0.chain }) == t { return }
        }
    }

    /// Starts a new agent process (no-op if one runs). The first start binds a port below the kernel's ephemeral
    /// range, reserved for the slot's life (see `LoopbackSockets.PortReservation`; an ephemeral one if none is free),
    /// later ones the same port.
    func start() async throws {
        if state.withLock({ $0.running != nil }) { return }
        let (port, number, previous) = state.withLock { s -> (Int, Int, String?) in
            s.attempts += 1
            return (s.port, s.attempts, s.lastStateDir)
        }
        let stateDir = "\(baseDirectory)/state-\(number)"
        let alive = ProcessFlag()
        var log = logger
        log[metadataKey: "agent.node"] = "\(name)"
        log[metadataKey: "sim.process"] = "\(number)"
        let engine: ApplyEngine
        do {
            let fm = FileManager.default
            try? fm.removeItem(atPath: stateDir)
            if let previous, fm.fileExists(atPath: previous) {
                try fm.copyItem(atPath: previous, toPath: stateDir)
            } else {
                try fm.createDirectory(
                    atPath: stateDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            }
            node.mountAgentState(stateDir)
            engine = try ApplyEngine(
                system: node.agentProcess(alive: { alive.isAlive }), stateDir: stateDir, clock: clock,
                rebootDelay: rebootDelay, logger: log)
        } catch {
            state.withLock { s in
                s.startFailures += 1
                s.lastError = "cannot prepare state directory \(stateDir): \(error)"
            }
            throw error
        }
        let bindOn = { (candidate: Int) async throws -> (AgentServer, Int) in
            let server = try AgentServer(config: self.makeConfig(candidate, stateDir), engine: engine, logger: log)
            return (server, try await server.start())
        }
        let server: AgentServer
        let bound: Int
        var reservation: LoopbackSockets.PortReservation?
        do {
            if port != 0 {
                (server, bound) = try await bindOn(port)
            } else {
                ((server, bound), reservation) = try await LoopbackSockets.bindingStablePort(bindOn)
            }
        } catch {
            alive.kill()
            state.withLock { s in
                s.startFailures += 1
                s.lastError = "cannot bind 127.0.0.1:\(port == 0 ? "any port" : String(port)): \(error)"
            }
            throw error
        }
        state.withLock { s in
            s.processes += 1
            s.port = bound
            if let reservation { s.portReservation = reservation }
            s.running = Running(server: server, engine: engine, alive: alive, stateDir: stateDir)
            s.lastStateDir = stateDir
            s.lastError = nil
        }
        log.info("[simulation] nk3-agent process \(number) of \(name) started on 127.0.0.1:\(bound)")
        // Resume whatever the persisted state says (re-arm a boot apply's deadline, finish a rollback, …).
        await engine.start()
    }

    /// `start`, retried as systemd's `Restart=always` would (a start fails while another socket holds the port):
    /// every 250 ms for `attempts` tries. Throws the last failure.
    func startRetrying(attempts: Int = 40) async throws {
        for attempt in 1... {
            do {
                return try await start()
            } catch where attempt < attempts {
                logger.error("[simulation] agent of \(name) could not start (attempt \(attempt)): \(error); retrying")
                try? await Task.sleep(for: .milliseconds(250))
            }
        }
    }

    /// Stops the running agent process: its view of the node dies, its port closes, its state is frozen.
    func stop(reason: String) async {
        guard let running = state.withLock({ s -> Running? in
            defer { s.running = nil }
            s.connectionsOfStopped += s.running?.server.acceptedConnectionCount ?? 0
            return s.running
        }) else { return }
        running.alive.kill()
        // A machine going down does not wait for its processes: bound the graceful shutdown so a handler that
        // is slow to notice cancellation cannot hold the next boot's agent (queued behind this) back.
        let server = running.server
        let finished = await withTaskGroup(of: Bool.self) { group -> Bool in
            group.addTask {
                await server.shutdown()
                return true
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(5))
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        if !finished {
            logger.warning("[simulation] nk3-agent of \(name): shutdown took over 5 s; carrying on (\(reason))")
        }
        logger.info("[simulation] nk3-agent of \(name) stopped (\(reason))")
    }
}
