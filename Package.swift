// swift-tools-version:6.0
import Foundation
import PackageDescription

/// The package root, for linker flags that take a path.
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path

let package = Package(
    name: "VFSReplication",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "VFSReplication", targets: ["VFSReplication", "CVFSSQLiteLink"]),
        .executable(name: "vfs-rebuild", targets: ["vfs-rebuild"]),
        .executable(name: "vfs-bench", targets: ["vfs-bench"]),
        .executable(name: "vfs-replicate", targets: ["vfs-replicate"]),
        .executable(name: "vfs-status", targets: ["vfs-status"]),
        // The status page: framework-neutral (HTML, /status.json, /metrics), and served with
        // Hummingbird (`vfs-replicate --http`, or mounted in a Hummingbird app).
        .library(name: "VFSReplicationStatusPage", targets: ["VFSReplicationStatusPage"]),
        .library(name: "VFSReplicationDashboard", targets: ["VFSReplicationDashboard"]),
        // The uploader as a swift-service-lifecycle Service (kept out of the core library).
        .library(name: "VFSReplicationService", targets: ["VFSReplicationService"]),
        // The loadable SQLite extension (libvfsreplication.so). Build it with
        //   swift build -c release --product vfsreplication -Xswiftc -static-stdlib
        .library(name: "vfsreplication", type: .dynamic, targets: ["VFSReplicationExtension"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.65.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        // Tests only: another SQLite client in the same process.
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
    ],
    targets: [
        // System libraries (Debian packages; scripts/setup installs them).
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "COpenSSLCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        // The capture shim: wraps the unix VFS, spools committed WAL transactions.
        .target(
            name: "CVFSShim",
            cSettings: [.define("_GNU_SOURCE")],
            linkerSettings: [.linkedLibrary("uring"), .linkedLibrary("pthread")]
        ),
        // Points the shim's SQLite API table at the libsqlite3 a program links (everything but
        // the loadable extension, which uses its host's SQLite).
        .target(name: "CVFSSQLiteLink", dependencies: ["CSQLite"]),
        .target(
            name: "VFSReplication",
            dependencies: [
                "CVFSShim", "CLZ4", "CCurl", "COpenSSLCrypto",
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .executableTarget(
            name: "vfs-rebuild",
            dependencies: ["VFSReplication", "CVFSSQLiteLink", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/Tools/vfs-rebuild"
        ),
        // Entry point of the loadable extension; exports nothing else.
        .target(
            name: "CVFSExtension",
            dependencies: ["CVFSShim"],
            linkerSettings: [
                .unsafeFlags(["-Xlinker", "--version-script=\(packageRoot)/Sources/CVFSExtension/exports.map"])
            ]
        ),
        .target(
            name: "VFSReplicationExtension",
            dependencies: ["VFSReplication", "CVFSExtension", .product(name: "Logging", package: "swift-log")]
        ),
        .target(
            name: "VFSReplicationService",
            dependencies: [
                "VFSReplication",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(name: "VFSReplicationStatusPage", dependencies: ["VFSReplication"]),
        .target(
            name: "VFSReplicationDashboard",
            dependencies: [
                "VFSReplication", "VFSReplicationStatusPage",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "vfs-replicate",
            dependencies: [
                "VFSReplication", "VFSReplicationService", "VFSReplicationDashboard", "CVFSSQLiteLink",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Tools/vfs-replicate"
        ),
        .executableTarget(
            name: "vfs-status",
            dependencies: [
                "VFSReplication", "CVFSSQLiteLink",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Tools/vfs-status"
        ),
        .executableTarget(
            name: "vfs-bench",
            dependencies: [
                "VFSReplication", "CVFSSQLiteLink", "CSQLite",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Tools/vfs-bench"
        ),
        // GRDB brings its own SQLite module; it lives in its own test target.
        .testTarget(
            name: "VFSReplicationGRDBTests",
            dependencies: ["VFSReplication", "CVFSSQLiteLink", .product(name: "GRDB", package: "GRDB.swift")]
        ),
        // Pure tests: no processes, servers or files (`swift test --filter VFSReplicationUnitTests`,
        // seconds). Everything that starts processes, SeaweedFS or SQLite is VFSReplicationTests.
        .testTarget(
            name: "VFSReplicationUnitTests",
            dependencies: ["VFSReplication", "CVFSShim"]
        ),
        .testTarget(
            name: "VFSReplicationTests",
            dependencies: [
                "VFSReplication", "CVFSShim", "CVFSSQLiteLink", "CSQLite",
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                "VFSReplicationStatusPage", "VFSReplicationDashboard",
                .product(name: "Hummingbird", package: "hummingbird"),
            ]
        ),
    ]
)
