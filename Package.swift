// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "Baton",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "Baton", targets: ["Baton"]),
        .library(name: "BatonNIO", targets: ["BatonNIO"]),
        .library(name: "BatonHummingbird", targets: ["BatonHummingbird"]),
        .executable(name: "hello", targets: ["hello"]),
        .executable(name: "baton", targets: ["baton"]),
        // Vapor apps under Baton. SwiftPM builds only what a product needs: a package that uses
        // BatonHummingbird resolves Vapor's packages but never compiles them (README, "Vapor").
        .library(name: "BatonVapor", targets: ["BatonVapor"]),
        .executable(name: "vapor-hello", targets: ["vapor-hello"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        // No default traits: "FullFoundation" makes Hummingbird use Foundation's DateFormatter, which
        // links all of Foundation and ICU (~38 MB of .rodata in a static binary, and libFoundation's
        // load at every worker start); "ConfigurationSupport" (swift-configuration) is unused.
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.8.1"),
        .package(url: "https://github.com/hummingbird-project/swift-websocket.git", from: "1.6.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/vapor/vapor.git", from: "4.122.3"),
        // `swift package generate-documentation` (the DocC catalogs; .ci/run builds them with
        // --warnings-as-errors). A command plugin: nothing of it is linked into a product.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // The GNU-only libc calls Swift's Glibc module cannot see (no _GNU_SOURCE).
        .target(name: "CBaton"),
        .target(
            name: "Baton",
            dependencies: [
                "CBaton",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The framework-neutral serving core: accept loop, connection registry, the drain rules of
        // each protocol (HTTP/1, HTTP/2).
        .target(
            name: "BatonNIO",
            dependencies: [
                "Baton", "CBaton",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ]
        ),
        .target(
            name: "BatonHummingbird",
            dependencies: [
                "Baton", "BatonNIO",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
            ]
        ),
        // The master's command-line options, shared by `hello`, `vapor-hello` and `baton run`; a
        // target of its own so that `Baton` does not depend on ArgumentParser.
        .target(
            name: "BatonCommandLine",
            dependencies: [
                "Baton",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "hello",
            dependencies: [
                "Baton", "BatonCommandLine", "BatonHummingbird",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdHTTP2", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .target(
            name: "BatonVapor",
            dependencies: [
                "Baton", "BatonNIO",
                .product(name: "Vapor", package: "vapor"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The Vapor demo: the routes of `hello` plus /echo and /stream, served by BatonVapor.
        .executableTarget(
            name: "vapor-hello",
            dependencies: [
                "Baton", "BatonCommandLine", "BatonVapor",
                .product(name: "Vapor", package: "vapor"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Examples/vapor-hello"
        ),
        .executableTarget(
            name: "baton",
            dependencies: [
                "Baton", "BatonCommandLine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Benchmark baseline: the same route on stock Hummingbird, without Baton.
        .executableTarget(
            name: "plain-hummingbird",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
            ],
            path: "Benchmarks/PlainHummingbird"
        ),
        // Benchmark baseline: vapor-hello's routes on stock Vapor (`app.execute()` on a port).
        .executableTarget(
            name: "plain-vapor",
            dependencies: [.product(name: "Vapor", package: "vapor")],
            path: "Benchmarks/PlainVapor"
        ),
        .testTarget(name: "BatonTests", dependencies: ["Baton", "CBaton", .product(name: "Crypto", package: "swift-crypto")]),
        .testTarget(
            name: "BatonNIOTests",
            dependencies: [
                "BatonNIO", "CBaton",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ]
        ),
        // Process-level tests: they start the real `hello` and `baton` binaries, load them and
        // upgrade them (Operation/: `baton run|reload|status|stop` with the Python worker,
        // sd_notify to systemd, socket activation).
        .testTarget(
            name: "BatonIntegrationTests",
            dependencies: [
                "BatonTestSupport", "hello", "baton", "vapor-hello",
                // The HTTP/2, TLS and WebSocket clients of HTTP2Tests, TLSTests and WebSocketTests.
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "WSClient", package: "swift-websocket"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
            ]
        ),
        // Fuzzing (Fuzz/README.md): one check per parser that a user or a peer process feeds, in
        // BatonFuzzTargets; `baton-fuzz` runs them under libFuzzer (Fuzz/run.sh), BatonFuzzTests
        // replays the committed corpus through them in every `swift test`. No product depends on it.
        .target(
            name: "BatonFuzzTargets",
            dependencies: [
                "Baton", "BatonNIO",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Fuzz/Targets"
        ),
        .executableTarget(name: "baton-fuzz", dependencies: ["BatonFuzzTargets"], path: "Fuzz/Driver"),
        // The Hummingbird adapter's pieces that need no process: server builders into child channels.
        .testTarget(
            name: "BatonHummingbirdTests",
            dependencies: [
                "BatonHummingbird",
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdHTTP2", package: "hummingbird"),
            ]
        ),
        .testTarget(name: "BatonFuzzTests", dependencies: ["BatonFuzzTargets"]),
        // What the process tests share: starting and watching processes (`TestProcess`,
        // `HelloProcess`), a small HTTP client and load generator, /proc, and the base test case.
        .target(name: "BatonTestSupport", dependencies: ["Baton"], path: "Tests/BatonTestSupport"),
    ]
)
