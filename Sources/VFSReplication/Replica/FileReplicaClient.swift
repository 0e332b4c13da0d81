import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A replica in a local directory, laid out as Litestream 0.5's `file` replica:
/// `<directory>/ltx/<level>/<minTXID %016x>-<maxTXID %016x>.ltx` (level in decimal).
///
/// ```swift
/// let replica = try FileReplicaClient(url: "file:///var/backups/app")
/// for level in try replica.listLevels() { print(try replica.listFiles(level: level)) }
/// ```
///
/// Publishing never overwrites: the file is copied to a hidden temporary name in the level
/// directory, fsynced, then renamed with `renameat2(RENAME_NOREPLACE)` (or `link` + `unlink`
/// where that is unavailable), and the directory is fsynced. An existing target means another
/// writer owns the lineage: `ReplicationError(.fenced, ...)`. The file's mtime is set to the
/// LTX timestamp, as Litestream does, so Litestream's timestamp restores work on our files.
/// https://man7.org/linux/man-pages/man2/rename.2.html
public struct FileReplicaClient: ReplicaClient {
    /// The replica root (absolute or relative to the current directory).
    public let directory: String

    public init(directory: String) {
        var dir = directory
        while dir.count > 1 && dir.hasSuffix("/") { dir.removeLast() }
        self.directory = dir
    }

    /// Accepts `file:///absolute/dir` (percent-encoded) or a plain path.
    public init(url: String) throws {
        if url.hasPrefix("file:") {
            guard let parsed = URL(string: url), parsed.isFileURL, !parsed.path.isEmpty,
                parsed.host == nil || parsed.host == "" || parsed.host == "localhost"
            else {
                throw ReplicationError(.invalidArgument, "replica url \(url): expected file:///absolute/directory")
            }
            self.init(directory: parsed.path)
        } else if url.contains("://") {
            throw ReplicationError(.invalidArgument, "replica url \(url): not a file:// url")
        } else {
            self.init(directory: url)
        }
    }

    public var location: String {
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove(charactersIn: "%")
        return "file://" + (directory.addingPercentEncoding(withAllowedCharacters: allowed) ?? directory)
    }

    public func levelDirectory(_ level: Int) -> String {
        directory + "/ltx/" + String(level)
    }

    public func path(of file: LTXFileInfo) -> String {
        path(level: file.level, minTXID: file.minTXID, maxTXID: file.maxTXID)
    }

    public func path(level: Int, minTXID: UInt64, maxTXID: UInt64) -> String {
        levelDirectory(level) + "/" + LTXFileInfo.fileName(minTXID: minTXID, maxTXID: maxTXID)
    }

    public func listLevels() throws -> [Int] {
        let root = directory + "/ltx"
        guard LTXIO.isDirectory(root) else { return [] }
        var levels: [Int] = []
        for name in try entries(of: root) {
            guard let level = Int(name), level >= 0, String(level) == name else { continue }
            if try entries(of: levelDirectory(level)).contains(where: { LTXFileInfo.parse(fileName: $0) != nil }) {
                levels.append(level)
            }
        }
        return levels.sorted()
    }

    /// Files of one level sorted by (minTXID, maxTXID); `createdAt` is the LTX header timestamp
    /// (the file's mtime if the header cannot be read). Other names (temporary files) are ignored.
    public func listFiles(level: Int) throws -> [LTXFileInfo] {
        let dir = levelDirectory(level)
        guard LTXIO.isDirectory(dir) else { return [] }
        var files: [LTXFileInfo] = []
        for name in try entries(of: dir) {
            guard let (minTXID, maxTXID) = LTXFileInfo.parse(fileName: name) else { continue }
            let path = dir + "/" + name
            var st = stat()
            guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
            let mtime = Date(
                timeIntervalSince1970: Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1_000_000_000)
            let created = (try? LTXDecoder.readHeader(path: path))?.date ?? mtime
            files.append(
                LTXFileInfo(
                    level: level, minTXID: minTXID, maxTXID: maxTXID, size: Int64(st.st_size), createdAt: created))
        }
        return files.sorted { ($0.minTXID, $0.maxTXID) < ($1.minTXID, $1.maxTXID) }
    }

    public func fetch(_ file: LTXFileInfo) throws -> LocalLTXFile {
        let path = path(of: file)
        guard LTXIO.exists(path) else {
            throw ReplicationError(.missingReplica, "replica file \(path) does not exist")
        }
        return LocalLTXFile(path: path, isTemporary: false)
    }

    public func publish(level: Int, minTXID: UInt64, maxTXID: UInt64, localPath: String, timestamp: Date) throws {
        let dir = levelDirectory(level)
        try makeDirectories(dir)
        let name = LTXFileInfo.fileName(minTXID: minTXID, maxTXID: maxTXID)
        let target = dir + "/" + name
        let temp = dir + "/.\(name).\(getpid()).\(UInt32.random(in: 0...UInt32.max)).tmp"
        do {
            try copy(localPath, to: temp, mtime: timestamp)
            try renameNoReplace(temp, target, object: "L\(level)/\(name)")
        } catch {
            LTXIO.unlink(temp)
            throw error
        }
        try LTXIO.fsyncDirectory(dir)
    }

    public func delete(_ files: [LTXFileInfo]) throws {
        var touched = Set<String>()
        for file in files {
            let path = path(of: file)
            if Glibc.unlink(path) != 0 && errno != ENOENT { throw LTXIO.error("unlink", path) }
            touched.insert(levelDirectory(file.level))
        }
        for dir in touched.sorted() where LTXIO.isDirectory(dir) { try LTXIO.fsyncDirectory(dir) }
    }

    // MARK: - Helpers

    private func entries(of dir: String) throws -> [String] {
        do {
            return try FileManager.default.contentsOfDirectory(atPath: dir)
        } catch {
            throw ReplicationError(.io, "list \(dir): \(error.localizedDescription)")
        }
    }

    /// mkdir -p, fsyncing the parent of every directory it creates.
    private func makeDirectories(_ dir: String) throws {
        if LTXIO.isDirectory(dir) { return }
        let parent = LTXIO.directory(of: dir)
        if parent != dir { try makeDirectories(parent) }
        if mkdir(dir, 0o755) != 0 && errno != EEXIST { throw LTXIO.error("mkdir", dir) }
        try LTXIO.fsyncDirectory(parent)
    }

    private func copy(_ source: String, to destination: String, mtime: Date) throws {
        let input = try LTXIO.open(source, O_RDONLY)
        defer { LTXIO.close(input) }
        let output = try LTXIO.open(destination, O_WRONLY | O_CREAT | O_EXCL, mode: 0o644)
        defer { LTXIO.close(output) }
        // Not zero-filled: pread overwrites what is written out, and zeroing 1 MiB per published
        // file was the uploader's largest cost per commit (files are mostly a few KiB).
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        var offset: Int64 = 0
        while true {
            let n = try LTXIO.pread(input, buffer, offset: offset, path: source)
            if n == 0 { break }
            try LTXIO.pwrite(output, UnsafeRawBufferPointer(rebasing: buffer[0..<n]), offset: offset, path: destination)
            offset += Int64(n)
            if n < buffer.count { break }  // LTXIO.pread is short only at the end of the file
        }
        try LTXIO.fsync(output, path: destination)
        let seconds = mtime.timeIntervalSince1970.rounded(.down)
        let nanos = Int((mtime.timeIntervalSince1970 - seconds) * 1_000_000_000)
        var times = [
            timespec(tv_sec: Int(seconds), tv_nsec: nanos), timespec(tv_sec: Int(seconds), tv_nsec: nanos),
        ]
        if futimens(output, &times) != 0 { throw LTXIO.error("set mtime of", destination) }
    }

    /// Renames without ever replacing an existing `target`.
    private func renameNoReplace(_ temp: String, _ target: String, object: String) throws {
        if try !LTXIO.renameNoReplace(temp, target) {
            throw ReplicationError(
                .fenced, "replica object \(object) already exists in \(location): another writer owns this replica")
        }
    }
}
