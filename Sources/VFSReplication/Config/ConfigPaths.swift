import Foundation

/// Path arithmetic for the configuration: lexical standardization (pure) and the canonical form
/// used to match a database opened by SQLite with its configuration entry (reads symlinks).
enum ConfigPaths {
    /// Makes `path` absolute against `base` (itself made absolute against the current directory),
    /// expands a leading `~` from `home`, and standardizes it lexically.
    ///
    /// ```swift
    /// ConfigPaths.absolute("storage/../db.sqlite3", relativeTo: "/app/config") // "/app/db.sqlite3"
    /// ```
    static func absolute(_ path: String, relativeTo base: String, home: String? = nil) -> String {
        var path = path
        if let home, !home.isEmpty, path == "~" || path.hasPrefix("~/") {
            path = home + path.dropFirst()
        }
        if path.hasPrefix("/") { return standardize(path) }
        let base = base.hasPrefix("/") ? base : FileManager.default.currentDirectoryPath + "/" + base
        return standardize(base + "/" + path)
    }

    /// Removes empty and `.` components and applies `..` lexically; the result is absolute
    /// (`/` for the root) and never ends with `/`. `path` must be absolute.
    static func standardize(_ path: String) -> String {
        var components: [Substring] = []
        for component in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch component {
            case ".": continue
            case "..": _ = components.popLast()
            default: components.append(component)
            }
        }
        return "/" + components.joined(separator: "/")
    }

    /// Why `path` cannot be a database file, or nil: it names a folder or something else that
    /// is not a regular file (symlinks followed), or its folder is a file. A missing file is fine
    /// (SQLite creates it).
    static func problem(withDatabasePath path: String) -> String? {
        var info = stat()
        if stat(path, &info) == 0 {
            switch info.st_mode & S_IFMT {
            case S_IFREG: return nil
            case S_IFDIR: return "names a folder (\(path)); it must name the database file"
            default: return "names \(path), which is not a regular file"
            }
        }
        let folder = (path as NSString).deletingLastPathComponent
        if stat(folder, &info) == 0, info.st_mode & S_IFMT != S_IFDIR {
            return "names a file inside \(folder), which is not a folder"
        }
        return nil
    }

    /// The canonical form of an absolute path: every existing symlink along it is resolved, in
    /// order, with `..` applied after resolution (as the kernel and SQLite's unix VFS full-path
    /// logic do). Components that do not exist yet (the database file before its first open, even
    /// its folder) are kept as they are, so a configured path and the path SQLite opens compare
    /// equal whether or not the file exists.
    ///
    /// See https://sqlite.org/c3ref/vfs.html (xFullPathname) and realpath(3).
    static func canonical(_ path: String) -> String {
        let fileManager = FileManager.default
        var resolved: [String] = []
        // Components still to walk, last element first.
        var pending = path.split(separator: "/").map(String.init).reversed() as [String]
        var symlinksFollowed = 0
        while let component = pending.popLast() {
            switch component {
            case "", ".": continue
            case "..":
                _ = resolved.popLast()
                continue
            default: break
            }
            resolved.append(component)
            let current = "/" + resolved.joined(separator: "/")
            guard let target = try? fileManager.destinationOfSymbolicLink(atPath: current) else { continue }
            symlinksFollowed += 1
            if symlinksFollowed > 40 { return standardize(path) }  // a loop (ELOOP): give up resolving
            resolved.removeLast()
            if target.hasPrefix("/") { resolved.removeAll() }
            pending.append(contentsOf: target.split(separator: "/").map(String.init).reversed())
        }
        return "/" + resolved.joined(separator: "/")
    }
}
