// swift-tools-version:6.1
// nk3: declarative, rolling NixOS + k3s cluster management (agent + coordinator).
import PackageDescription

// nk3-agent's link, for resident memory (scripts/rss-by-module.py): linked with lld so that the 77,000 relative
// relocations are packed (RELR, glibc >= 2.36: 15 KB instead of a 1.8 MB .rela.dyn that the loader reads at every
// start), and without --export-dynamic (which --static-swift-stdlib adds: 32,000 exported symbols the loader
// hashes and that keep dead code). Crash backtraces are unaffected: swift-backtrace reads .symtab and DWARF from
// the file, not the dynamic symbol table. Security features stay as they were (PIE, RELRO, non-executable stack:
// readelf -l/-d show the same as with gold). NK3_AGENT_PLAIN_LINK=1 builds with the toolchain's default linker
// and flags instead (a toolchain without ld.lld, or a glibc older than 2.36).
let agentLinkerSettings: [LinkerSetting] =
    Context.environment["NK3_AGENT_PLAIN_LINK"] == "1"
    ? []
    : [
        .unsafeFlags(
            [
                "-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs",
                "-Xlinker", "--no-export-dynamic",
                // Code the agent runs (start, idle, status requests) laid out together, so it keeps few 64 KiB
                // fault-around windows resident; regenerate with
                // `scripts/rss-by-module.py --run AGENT --callgrind --requests 200 --order-file …`.
                // Names that no longer exist are skipped. SwiftPM does not relink for a changed ordering file:
                // touch a source of nk3-agent after regenerating it.
                "-Xlinker", "--symbol-ordering-file=\(Context.packageDirectory)/Sources/nk3-agent/link-order.txt",
                "-Xlinker", "--no-warn-symbol-ordering",
            ], .when(platforms: [.linux])),
    ]

let package = Package(
    name: "nk3",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "nk3", targets: ["nk3"]),
        .executable(name: "nk3-agent", targets: ["nk3-agent"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.81.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.30.0"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.10.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.0"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.3.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.24.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.0.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "5.0.0"),
        // WebSocket frames for the Kubernetes exec subresource (the Ceph gate's `ceph status` in Rook's toolbox).
        .package(url: "https://github.com/vapor/websocket-kit.git", from: "2.16.2"),
    ],
    targets: [
        // Wire types, canonical encoding, Ed25519 envelopes, and pure PKI minting. No I/O.
        .target(
            name: "NK3Protocol",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            path: "Sources/Protocol"
        ),
        // Shared I/O helpers: atomic files, 0600 key files, TLS configuration, a small HTTPS server.
        .target(
            name: "NK3Common",
            dependencies: [
                "NK3Protocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Common"
        ),
        // The node agent: mTLS server, apply state machine, rollback, NixOS system backend, status, metrics.
        .target(
            name: "NK3Agent",
            dependencies: [
                "NK3Protocol", "NK3Common",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            path: "Sources/Agent",
            // Kill points for the kill -9 matrix exist in debug builds only; release builds (what ships) have
            // none (Sources/Agent/Engine/TestKillPoints.swift, scripts/check-release-hooks.sh).
            swiftSettings: [.define("NK3_TEST_HOOKS", .when(configuration: .debug))]
        ),
        // Kubernetes API client (kubeconfig, nodes, pods, eviction, apps, Lease, CephCluster).
        .target(
            name: "NK3Kube",
            dependencies: [
                "NK3Common",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "WebSocketKit", package: "websocket-kit"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Kube"
        ),
        // A Jinja2 template engine (lexer, parser, evaluator) with Jinja2 3.1's semantics. No I/O but the loader.
        .target(name: "NK3Jinja", path: "Sources/Jinja"),
        // The coordinator: inventory, templates, diff, PKI files, agent client, gates, rollout, output.
        .target(
            name: "NK3Coordinator",
            dependencies: [
                "NK3Protocol", "NK3Common", "NK3Kube", "NK3Jinja",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Coordinator"
        ),
        // Simulations (labelled as such): simulated NixOS node, fake Kubernetes API server, simulated cluster.
        .target(
            name: "NK3Simulation",
            dependencies: [
                "NK3Protocol", "NK3Common", "NK3Agent", "NK3Kube", "NK3Coordinator",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "WebSocketKit", package: "websocket-kit"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ],
            path: "Sources/Simulation"
        ),
        .executableTarget(
            name: "nk3",
            dependencies: [
                "NK3Protocol", "NK3Common", "NK3Coordinator", "NK3Kube", "NK3Simulation",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/nk3"
        ),
        .executableTarget(
            name: "nk3-agent",
            dependencies: [
                "NK3Protocol", "NK3Common", "NK3Agent",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Sources/nk3-agent",
            exclude: ["link-order.txt"],
            linkerSettings: agentLinkerSettings
        ),
        .testTarget(name: "JinjaTests", dependencies: ["NK3Jinja"], path: "Tests/JinjaTests", resources: [.copy("Fixtures")]),
        .testTarget(name: "ProtocolTests", dependencies: ["NK3Protocol"], path: "Tests/ProtocolTests"),
        .testTarget(
            name: "AgentTests",
            dependencies: ["NK3Agent", "NK3Protocol", "NK3Common", "NK3Simulation", "NK3Coordinator"],
            path: "Tests/AgentTests"
        ),
        .testTarget(
            name: "KubeTests",
            dependencies: ["NK3Kube", "NK3Simulation", "NK3Common"],
            path: "Tests/KubeTests"
        ),
        .testTarget(
            name: "CoordinatorTests",
            dependencies: ["NK3Coordinator", "NK3Protocol", "NK3Simulation", "NK3Kube", "NK3Jinja", "NK3Common"],
            path: "Tests/CoordinatorTests",
            resources: [.copy("Fixtures")]
        ),
        .testTarget(
            name: "EndToEndTests",
            dependencies: ["NK3Coordinator", "NK3Agent", "NK3Simulation", "NK3Kube", "NK3Protocol"],
            path: "Tests/EndToEndTests"
        ),
    ],
    swiftLanguageModes: [.v6]
)
