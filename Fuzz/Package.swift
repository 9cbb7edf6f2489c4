// swift-tools-version:6.1
// nk3 fuzzing: libFuzzer harnesses over nk3's decoders of untrusted and operator-written bytes.
//
// A separate package so that the main build never compiles with sanitizers. It compiles nk3's library
// modules from the same sources (Fuzz/Modules/* are symlinks to ../../Sources/*: the main package has no
// library products to depend on) plus the shared harness (Sources/NK3FuzzHarness, which the main test
// suite also compiles, to replay the committed corpora). Build and run with scripts/fuzz.sh; see
// docs/RELIABILITY.md.
import PackageDescription

let package = Package(
    name: "nk3-fuzz",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.81.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.30.0"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.10.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.0"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.3.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.24.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.0.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "5.0.0"),
        .package(url: "https://github.com/vapor/websocket-kit.git", from: "2.16.2"),
    ],
    targets: [
        .target(
            name: "NK3Protocol",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            path: "Modules/Protocol"
        ),
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
            path: "Modules/Common"
        ),
        .target(
            name: "NK3Agent",
            dependencies: [
                "NK3Protocol", "NK3Common",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            path: "Modules/Agent"
        ),
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
            path: "Modules/Kube"
        ),
        .target(name: "NK3Jinja", path: "Modules/Jinja"),
        .target(
            name: "NK3Coordinator",
            dependencies: [
                "NK3Protocol", "NK3Common", "NK3Kube", "NK3Jinja",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Modules/Coordinator"
        ),
        // The harness entry points (one per target), shared with the main test suite.
        .target(
            name: "NK3FuzzHarness",
            dependencies: [
                "NK3Protocol", "NK3Common", "NK3Agent", "NK3Kube", "NK3Coordinator",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // One libFuzzer binary; NK3_FUZZ_TARGET picks the harness. Built with -sanitize=fuzzer,address and
        // -parse-as-library; its entry runs libFuzzer's driver (CNK3FuzzDriver declares it).
        .target(name: "CNK3FuzzDriver"),
        .executableTarget(
            name: "nk3-fuzz", dependencies: ["NK3FuzzHarness", "CNK3FuzzDriver"],
            linkerSettings: [.unsafeFlags(["-use-ld=lld"])]  // gold fails on the sanitizer runtime here
        ),
    ],
    swiftLanguageModes: [.v6]
)
