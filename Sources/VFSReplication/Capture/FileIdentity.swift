import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A file as the shim identifies it (`recordCleanClose`, `vr_db_adopt`): inode, size and mtime
/// in nanoseconds. Any write through any means changes at least one of them.
struct FileIdentity: Equatable {
    var inode: UInt64
    var size: UInt64
    var mtimeNs: Int64

    init(inode: UInt64, size: UInt64, mtimeNs: Int64) {
        self.inode = inode
        self.size = size
        self.mtimeNs = mtimeNs
    }

    init(_ st: stat) {
        self.init(
            inode: UInt64(st.st_ino), size: UInt64(st.st_size),
            mtimeNs: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec))
    }

    /// Nil when the file cannot be stat'ed (it does not exist).
    init?(path: String) {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        self.init(st)
    }
}
