#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The system calls the LTX codec, the directory replica and restore use: each retries EINTR
/// and reports errno as `ReplicationError(.io, "<operation> <path>: <strerror>")`.
enum LTXIO {
    static func error(_ operation: String, _ path: String, errno code: Int32 = errno) -> ReplicationError {
        ReplicationError(.io, "\(operation) \(path): \(String(cString: strerror(code))) (errno \(code))")
    }

    /// Calls `body` until it does not fail with EINTR.
    @inline(__always)
    static func retrying<T: SignedInteger>(_ operation: String, _ path: String, _ body: () -> T) throws -> T {
        while true {
            let r = body()
            if r >= 0 { return r }
            if errno == EINTR { continue }
            throw error(operation, path)
        }
    }

    static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws -> Int32 {
        try retrying("open", path) { Glibc.open(path, flags | O_CLOEXEC, mode) }
    }

    static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }

    /// Reads up to `buffer.count` bytes at `offset`; fewer only at end of file.
    static func pread(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, offset: Int64, path: String) throws -> Int {
        var done = 0
        while done < buffer.count {
            let n = try retrying("read", path) {
                Glibc.pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    static func pwrite(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, offset: Int64, path: String) throws {
        var done = 0
        while done < buffer.count {
            let n = try retrying("write", path) {
                Glibc.pwrite(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            }
            done += n
        }
    }

    static func fsync(_ fd: Int32, path: String) throws {
        _ = try retrying("fsync", path) { Glibc.fsync(fd) }
    }

    static func ftruncate(_ fd: Int32, size: Int64, path: String) throws {
        _ = try retrying("truncate", path) { Glibc.ftruncate(fd, off_t(size)) }
    }

    static func fileSize(_ fd: Int32, path: String) throws -> Int64 {
        var st = stat()
        _ = try retrying("stat", path) { fstat(fd, &st) }
        return Int64(st.st_size)
    }

    /// fsyncs a directory so that a rename or create inside it is durable.
    static func fsyncDirectory(_ path: String) throws {
        let fd = try open(path, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        try fsync(fd, path: path)
    }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    static func unlink(_ path: String) {
        _ = Glibc.unlink(path)
    }

    /// The directory part of a path ("." when there is none).
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }

    static func lastComponent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    /// Renames `source` to `target` unless `target` exists; returns false (and leaves `source`
    /// in place) if it does. Uses renameat2(RENAME_NOREPLACE), or link() + unlink() on
    /// filesystems without it; neither ever replaces the target.
    /// https://man7.org/linux/man-pages/man2/rename.2.html
    static func renameNoReplace(_ source: String, _ target: String) throws -> Bool {
        if let renameat2 = renameat2Function {
            if renameat2(AT_FDCWD, source, AT_FDCWD, target, renameNoReplaceFlag) == 0 { return true }
            let code = errno
            if code == EEXIST { return false }
            if code != EINVAL && code != ENOSYS && code != ENOTSUP { throw error("rename", source, errno: code) }
        }
        if link(source, target) != 0 {
            let code = errno
            if code == EEXIST { return false }
            throw error("link", target, errno: code)
        }
        unlink(source)
        return true
    }

    static func rename(_ source: String, _ target: String) throws {
        if Glibc.rename(source, target) != 0 { throw error("rename", source) }
    }

    private typealias RenameAt2 =
        @convention(c) (Int32, UnsafePointer<CChar>?, Int32, UnsafePointer<CChar>?, UInt32) -> Int32

    /// RENAME_NOREPLACE from <linux/fs.h>.
    private static let renameNoReplaceFlag: UInt32 = 1

    /// glibc declares renameat2 only under _GNU_SOURCE, which Swift's Glibc module does not
    /// see, so look the symbol up at run time (glibc >= 2.28).
    private static let renameat2Function: RenameAt2? = {
        guard let symbol = dlsym(nil, "renameat2") else { return nil }
        return unsafeBitCast(symbol, to: RenameAt2.self)
    }()
}
