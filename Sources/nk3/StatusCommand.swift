import ArgumentParser
import Dispatch
import Foundation
import NK3Coordinator
import NK3Kube

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "One table of every node, from its agent (fetched in parallel) and the Kubernetes API.",
        discussion: """
            Columns: reachable, running kernel, NixOS generation current/booted, rollback mode (trial-boot: the boot \
            loader boots a new generation once and falls back at the next reset; dead-man: the agent rolls back after \
            its confirm deadline), whether the landed configuration \
            equals what the inventory renders, kubelet (agent's view: unit and healthz on 127.0.0.1:10248), \
            cordoned (Kubernetes; `?` if the API is unreachable), and the operation in progress or the last result. \
            Exit code 3 if any agent is unreachable. With --watch the table is fetched again every --interval \
            seconds and redrawn in place on a terminal (appended otherwise) until Ctrl-C, which exits 0.
            """)

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Do not ask the Kubernetes API (cordon column shows `?`).")
    var noKube = false

    @Flag(help: "Refresh the table in place until interrupted (Ctrl-C).")
    var watch = false

    @Option(help: "Seconds between refreshes with --watch.")
    var interval: Double = 2

    func validate() throws {
        guard interval >= 0.2, interval <= 3600 else { throw ValidationError("--interval must be 0.2–3600 seconds") }
    }

    static func rows(_ session: ClusterSession, noKube: Bool) async -> [NodeStatusRow] {
        let probes = await session.probeAll()
        let rendered = try? session.render(statuses: probes.reduce(into: [:]) { $0[$1.node] = try? $1.result.get() })
        let cordoned = noKube ? [:] : await session.cordonStates()
        return probes.map { NodeStatusRow(probe: $0, rendered: rendered?[$0.node], cordoned: cordoned[$0.node]) }
    }

    func run() async throws {
        let session = try global.session()
        if watch { return try await runWatch(session) }
        let rows = await Self.rows(session, noKube: noKube)
        switch global.output {
        case .human: print(StatusTable.render(rows))
        case .json:
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            for r in rows { print(String(decoding: try enc.encode(r), as: UTF8.self)) }
        }
        if rows.contains(where: { !$0.reachable }) { throw ExitCode(RolloutFailure.Kind.unreachable.exitCode) }
    }

    /// `--watch`: redraw until SIGINT/SIGTERM (then exit 0).
    func runWatch(_ session: ClusterSession) async throws {
        let out = FileDescriptorWriter(fd: 1)
        let inPlace = out.isTerminal && ProcessInfo.processInfo.environment["TERM"] != "dumb"
        let seconds = interval
        let json = global.output == .json
        let noKube = self.noKube
        let loop = Task {
            while !Task.isCancelled {
                let rows = await Self.rows(session, noKube: noKube)
                let stamp = RolloutTimestamp.format(Date())
                if json {
                    let enc = JSONEncoder()
                    enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                    out.write(rows.compactMap { try? enc.encode($0) }.map { String(decoding: $0, as: UTF8.self) + "\n" }.joined())
                } else {
                    let header = "nk3 status every \(seconds) s · \(stamp) · Ctrl-C to stop\n"
                    // Cursor home + clear screen (ECMA-48 CUP, ED) so the table is redrawn in place.
                    out.write((inPlace ? "\u{1B}[H\u{1B}[2J" : "\n") + header + StatusTable.render(rows) + "\n")
                }
                try? await Task.sleep(for: .milliseconds(Int64(seconds * 1000)))
            }
        }
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        for sig in [SIGINT, SIGTERM] {
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { loop.cancel() }
            source.resume()
            SignalSources.keep(source)
        }
        await loop.value
        if inPlace { out.write("\n") }
    }
}
