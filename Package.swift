// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "VFSReplication",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "VFSReplication", targets: ["VFSReplication"]),
        .executable(name: "vfs-rebuild", targets: ["vfs-rebuild"]),
        .executable(name: "vfs-bench", targets: ["vfs-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        // System libraries (Debian packages; scripts/setup installs them).
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
        // The capture shim: wraps the unix VFS, spools committed WAL transactions.
        .target(
            name: "CVFSShim",
            dependencies: ["CSQLite"],
            cSettings: [.define("_GNU_SOURCE")],
            linkerSettings: [.linkedLibrary("uring"), .linkedLibrary("pthread")]
        ),
        .target(
            name: "VFSReplication",
            dependencies: [
                "CVFSShim", "CSQLite", "CLZ4",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .executableTarget(
            name: "vfs-rebuild",
            dependencies: ["VFSReplication", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/Tools/vfs-rebuild"
        ),
        .executableTarget(
            name: "vfs-bench",
            dependencies: ["VFSReplication", "CSQLite", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/Tools/vfs-bench"
        ),
        .testTarget(
            name: "VFSReplicationTests",
            dependencies: ["VFSReplication", "CVFSShim", "CSQLite"]
        ),
    ]
)
