import ArgumentParser
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
            Exit code 3 if any agent is unreachable.
            """)

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Do not ask the Kubernetes API (cordon column shows `?`).")
    var noKube = false

    func run() async throws {
        let session = try global.session()
        let probes = await session.probeAll()
        let rendered = try? session.render()
        let cordoned = noKube ? [:] : await session.cordonStates()
        let rows = probes.map { NodeStatusRow(probe: $0, rendered: rendered?[$0.node], cordoned: cordoned[$0.node]) }
        switch global.output {
        case .human: print(StatusTable.render(rows))
        case .json:
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            for r in rows { print(String(decoding: try enc.encode(r), as: UTF8.self)) }
        }
        if rows.contains(where: { !$0.reachable }) { throw ExitCode(RolloutFailure.Kind.unreachable.exitCode) }
    }
}
