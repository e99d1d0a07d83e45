// swift-tools-version:6.2
import PackageDescription

let package = Package(
    name: "doze",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "doze", targets: ["doze"]),
        .executable(name: "doze-bench", targets: ["DozeBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.0"..<"5.0.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.0"),
    ],
    targets: [
        // Pure logic: no IO, no clocks; time is passed in.
        .target(name: "ClusterCore", dependencies: [.product(name: "Logging", package: "swift-log")]),
        // Wire shapes: Snooze-compatible DTOs and the host/VM API bodies.
        .target(name: "ClusterWire", dependencies: ["ClusterCore", .product(name: "Crypto", package: "swift-crypto")]),
        // Heartbeat datagrams (NIO UDP) and the HTTP client roles use to talk to each other.
        .target(name: "ClusterTransport", dependencies: [
            "ClusterCore", "ClusterWire",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
        ]),
        // The hypervisor protocol and its value types.
        .target(name: "Hypervisor", dependencies: ["ClusterCore"]),
        .systemLibrary(name: "CLibvirt", pkgConfig: "libvirt", providers: [.apt(["libvirt-dev"])]),
        .target(name: "LibvirtHypervisor", dependencies: ["Hypervisor", "ClusterCore", "CLibvirt"]),
        .target(name: "ClusterAPI", dependencies: [
            "ClusterCore", "ClusterWire", "ClusterTransport",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdCore", package: "hummingbird"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
        ]),
        .target(name: "ClusterNode", dependencies: [
            "ClusterCore", "ClusterWire", "Hypervisor", "ClusterAPI", "ClusterTransport",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "HummingbirdTLS", package: "hummingbird"),
        ]),
        // `doze cluster up|down`: topology files, node processes, network namespaces, etcd members. Runs nodes,
        // never is one: nothing here is linked into a role.
        .target(name: "ClusterLauncher", dependencies: [
            "ClusterCore", "ClusterWire", "ClusterTransport",
            .product(name: "Yams", package: "Yams"),
            .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        .executableTarget(name: "doze", dependencies: [
            "ClusterNode", "ClusterLauncher", "LibvirtHypervisor", "ClusterCore", "ClusterWire", "ClusterTransport", "ClusterAPI",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "DozeBench", dependencies: [
            "ClusterWire", "Hypervisor", "LibvirtHypervisor",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        .target(name: "ClusterTestKit", dependencies: [
            "ClusterCore", "ClusterWire", "Hypervisor",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        .testTarget(name: "ClusterCoreTests", dependencies: ["ClusterCore", "ClusterWire"]),
        .testTarget(name: "ClusterTransportTests", dependencies: ["ClusterTransport"]),
        .testTarget(name: "HypervisorTests", dependencies: ["Hypervisor", "LibvirtHypervisor", "ClusterTestKit"]),
        .testTarget(name: "ClusterNodeTests", dependencies: ["ClusterNode", "ClusterCore", "ClusterWire"]),
        .testTarget(name: "ClusterAPITests", dependencies: [
            "ClusterAPI", "ClusterNode", "ClusterTestKit", "LibvirtHypervisor",
            .product(name: "HummingbirdTesting", package: "hummingbird"),
        ]),
        .testTarget(name: "ClusterTests", dependencies: [
            "ClusterTestKit", "ClusterWire", "ClusterCore", "ClusterTransport", "ClusterNode",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
        ]),
    ]
)

for target in package.targets where target.type != .system {
    target.swiftSettings = (target.swiftSettings ?? []) + [
        .enableUpcomingFeature("ExistentialAny"),
        .enableUpcomingFeature("MemberImportVisibility"),
    ]
}
