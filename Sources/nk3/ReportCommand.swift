import ArgumentParser
import Foundation
import NK3Coordinator

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Turn a rollout's event log into a self-contained HTML page: timeline and summary.",
        discussion: """
            Every rollout writes its events (the lines `--output json` prints) to \
            `.nk3/rollouts/<UTC start time>.jsonl` next to the inventory (inventory `rollout_log_dir` to change \
            it). The page has an SVG timeline — one row per node, one bar per phase, waits hatched, failures in \
            red — and a table of per-phase durations, the slowest node and the time lost waiting on the health \
            gates, the maintenance window and firing alerts. No scripts, no external assets: open it anywhere.
            """)

    @Argument(help: "The event log (default: the newest in the inventory's rollout log directory).")
    var log: String?

    @Option(name: .shortAndLong, help: "Inventory file (YAML); only its rollout_log_dir is read, to find the newest log.")
    var inventory: String = "inventory.yaml"

    @Option(name: .shortAndLong, help: "Where to write the page (default: the log's path with .html; `-` for stdout).")
    var output: String?

    func run() throws {
        let path: String
        if let log {
            path = log
        } else {
            let directory: String
            if let inv = try? Inventory.load(path: inventory) {
                directory = inv.operate.rolloutLogDirectory
            } else {
                directory = RolloutLog.defaultDirectory(inventoryDirectory: (inventory as NSString).deletingLastPathComponent)
            }
            guard let newest = RolloutLog.newest(in: directory) else {
                throw ValidationError("no rollout log in \(directory); name one: nk3 report LOG")
            }
            path = newest
        }
        let events: [RolloutEvent]
        do { events = try RolloutLog.read(path: path) } catch let e as CoordinatorError {
            FileDescriptorWriter.standardError.write("error: \(e.message)\n")
            throw ExitCode(2)
        }
        let page = RolloutReport.html(events: events, title: (path as NSString).lastPathComponent)
        let target = output ?? ((path as NSString).deletingPathExtension + ".html")
        if target == "-" {
            FileDescriptorWriter.standardOutput.write(page)
            return
        }
        do {
            try Data(page.utf8).write(to: URL(fileURLWithPath: target), options: .atomic)
        } catch {
            FileDescriptorWriter.standardError.write("error: cannot write \(target): \(error.localizedDescription)\n")
            throw ExitCode(1)
        }
        print("Report of \(events.count) events: \(target)")
    }
}
