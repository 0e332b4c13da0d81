import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Records that a database file was rebuilt in place from its replica at a TXID, so the first
/// process that replicates it continues that lineage instead of treating the replica as
/// someone else's (`<db>-vfsrepl/restored.json`).
///
/// The record holds the file's identity (inode, size, mtime): if the file changes before it is
/// first opened through the VFS, the record no longer matches and a new lineage starts.
public struct RestoreMarker: Codable, Sendable, Equatable {
    public var replica: String
    public var txid: UInt64
    public var inode: UInt64
    public var size: UInt64
    public var mtimeNs: Int64
    /// When the restore renamed the file into place (absent in markers of older versions).
    public var restoredAt: Date?

    static func path(forDatabase db: String) -> String { db + "-vfsrepl/restored.json" }

    /// Called after a rebuild renamed a database into place at `databasePath`. Removes any older
    /// spool state of that path (it described the file the restore replaced).
    public static func record(databasePath: String, replica: String, txid: UInt64) throws {
        guard let file = FileIdentity(path: databasePath) else {
            throw ReplicationError(.io, "database \(databasePath): cannot stat the restored file: \(String(cString: strerror(errno)))")
        }
        let dir = databasePath + "-vfsrepl"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let marker = RestoreMarker(
            replica: replica, txid: txid, inode: file.inode, size: file.size, mtimeNs: file.mtimeNs, restoredAt: Date())
        // The page checksums of the restored state, so the writer that continues the lineage
        // gives its first batch a pre-apply checksum (which proves the continuation to a
        // restore, see LTXChain) without shipping a snapshot first.
        try PageChecksumMap.write(path: dir + "/pagesums", database: databasePath, txid: txid)
        let data = try JSONEncoder().encode(marker)
        try data.write(to: URL(fileURLWithPath: path(forDatabase: databasePath)), options: .atomic)
    }

    static func load(forDatabase db: String) -> RestoreMarker? {
        guard let data = FileManager.default.contents(atPath: path(forDatabase: db)) else { return nil }
        return try? JSONDecoder().decode(RestoreMarker.self, from: data)
    }

    static func remove(forDatabase db: String) { unlink(path(forDatabase: db)) }

    /// Whether the database file is still exactly the one the restore wrote (nothing opened and
    /// wrote it since).
    func matches(databasePath: String) -> Bool {
        FileIdentity(path: databasePath) == FileIdentity(inode: inode, size: size, mtimeNs: mtimeNs)
    }
}
