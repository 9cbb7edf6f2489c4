import ArgumentParser

/// Subcommands that live in their own files and are added as they land.
let extraSubcommands: [any ParsableCommand.Type] = [
    BootstrapCommand.self, DemoCommand.self, BenchCommand.self, RenderCommand.self, InitCommand.self,
    ReportCommand.self,
]
