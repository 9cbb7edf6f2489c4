#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NK3Common
import NK3Protocol

#if canImport(Glibc)
import Glibc
#endif

// The configuration directory: the managed files, their record, and the snapshot a revert restores.
extension NixOSSystem {
    /// The managed-file record's names, or nil if there is no record.
    func recordedNames() throws -> [String]? {
        let record = options.managedFilesRecord
        guard SecureFiles.exists(record) else { return nil }
        do {
            let data = try SecureFiles.read(record)
            return try JSONDecoder().decode([String].self, from: data)
        } catch {
            throw NodeSystemError(
                .fileIO, "cannot read the managed-files record \(record): \(error); delete it to start over")
        }
    }

    /// The managed files: the record's names; without a record (nothing landed by nk3 yet, and no bootstrap
    /// record), the file nixos-rebuild reads, which is what the coordinator diffs against.
    func managedNames() throws -> [String] {
        if let names = try recordedNames() { return names }
        return SecureFiles.exists("\(configDir)/configuration.nix") ? ["configuration.nix"] : []
    }

    func writeManagedNames(_ names: Set<String>) throws {
        do {
            let data = try JSONEncoder().encode(names.sorted())
            try SecureFiles.writeAtomically(data, to: options.managedFilesRecord, permissions: 0o600)
        } catch {
            throw NodeSystemError(.fileIO, "cannot write the managed-files record: \(error)")
        }
    }

    func refuseInvalidNames<S: Sequence<String>>(_ names: S) throws {
        for name in names where !ApplyBundle.isValidFileName(name) {
            throw NodeSystemError(.invalidInput, "refusing file name '\(name)': flat names [A-Za-z0-9._-] only")
        }
    }

    public func readConfigFiles() async throws -> [String: String] {
        var files: [String: String] = [:]
        for name in try managedNames() {
            let path = "\(configDir)/\(name)"
            guard SecureFiles.exists(path) else { continue }
            do {
                files[name] = try SecureFiles.readText(path)
            } catch {
                throw NodeSystemError(.fileIO, "cannot read \(path): \(error)")
            }
        }
        return files
    }

    public func replaceConfigFiles(with files: [String: String]) async throws {
        try refuseInvalidNames(files.keys)
        do {
            try SecureFiles.createDirectory(configDir)
        } catch {
            throw NodeSystemError(.fileIO, "cannot create \(configDir): \(error)")
        }
        let old = Set(try managedNames())
        let new = Set(files.keys)
        // Record the union first: after a crash mid-way every file that may be ours is still known.
        try writeManagedNames(old.union(new))
        for name in files.keys.sorted() {
            let path = "\(configDir)/\(name)"
            if case .file(let content, _)? = try? entry(at: path), content == Data(files[name]!.utf8) { continue }
            do {
                try SecureFiles.writeAtomically(files[name]!, to: path, permissions: 0o644)
            } catch {
                throw NodeSystemError(.fileIO, "cannot write \(path): \(error)")
            }
            fileReplaced(name)
        }
        for name in old.subtracting(new).sorted() {
            try remove("\(configDir)/\(name)")
            fileReplaced(name)
        }
        do { try SecureFiles.syncDirectory(configDir) } catch {}
        try writeManagedNames(new)
    }

    public func snapshotConfigFiles(touching names: Set<String>) async throws -> ConfigSnapshot {
        try refuseInvalidNames(names)
        let recorded = try recordedNames()
        var entries: [String: ConfigSnapshot.Entry] = [:]
        for name in names.union(try managedNames()) {
            entries[name] = try entry(at: "\(configDir)/\(name)")
        }
        return ConfigSnapshot(entries: entries, managedNames: recorded)
    }

    public func restoreConfigFiles(_ snapshot: ConfigSnapshot) async throws {
        try refuseInvalidNames(snapshot.entries.keys)
        do {
            try SecureFiles.createDirectory(configDir)
        } catch {
            throw NodeSystemError(.fileIO, "cannot create \(configDir): \(error)")
        }
        // Every name that may be ours stays recorded until the directory is as saved.
        try writeManagedNames(Set(try recordedNames() ?? []).union(snapshot.entries.keys))
        for (name, saved) in snapshot.entries.sorted(by: { $0.key < $1.key }) {
            let path = "\(configDir)/\(name)"
            if (try? entry(at: path)) == saved { continue }
            switch saved {
            case .absent:
                try remove(path)
            case .file(let content, let mode):
                do {
                    try SecureFiles.writeAtomically(content, to: path, permissions: mode_t(mode))
                } catch {
                    throw NodeSystemError(.fileIO, "cannot restore \(path): \(error)")
                }
            case .symlink(let target):
                try replaceWithSymlink(path, target: target)
            }
            fileReplaced(name)
        }
        do { try SecureFiles.syncDirectory(configDir) } catch {}
        if let names = snapshot.managedNames {
            try writeManagedNames(Set(names))
        } else {
            try remove(options.managedFilesRecord)
        }
    }

    /// What is at `path` now (not following a final symbolic link).
    func entry(at path: String) throws -> ConfigSnapshot.Entry {
        var st = stat()
        guard lstat(path, &st) == 0 else {
            if errno == ENOENT { return .absent }
            throw NodeSystemError(.fileIO, "cannot stat \(path): \(errnoText())")
        }
        switch st.st_mode & S_IFMT {
        case S_IFREG:
            do {
                return .file(content: try SecureFiles.read(path), mode: UInt16(st.st_mode & 0o7777))
            } catch {
                throw NodeSystemError(.fileIO, "cannot read \(path): \(error)")
            }
        case S_IFLNK:
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = readlink(path, &buffer, buffer.count - 1)
            guard n >= 0 else { throw NodeSystemError(.fileIO, "cannot read the link \(path): \(errnoText())") }
            return .symlink(target: String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self))
        default:
            throw NodeSystemError(
                .invalidInput, "\(path) is a directory or a special file; a bundle file may not replace it")
        }
    }

    /// Makes `path` a symbolic link to `target` in one rename (a reader sees the old entry or the link).
    private func replaceWithSymlink(_ path: String, target: String) throws {
        let tmp = "\(PathName.deletingLastComponent(path))/.\(PathName.lastComponent(path)).nk3-link-\(getpid())"
        unlink(tmp)
        guard symlink(target, tmp) == 0 else {
            throw NodeSystemError(.fileIO, "cannot create the link \(tmp): \(errnoText())")
        }
        guard rename(tmp, path) == 0 else {
            let text = errnoText()
            unlink(tmp)
            throw NodeSystemError(.fileIO, "cannot restore the link \(path): \(text)")
        }
    }

    private func remove(_ path: String) throws {
        if unlink(path) != 0 && errno != ENOENT {
            throw NodeSystemError(.fileIO, "cannot remove \(path): \(errnoText())")
        }
    }
}
