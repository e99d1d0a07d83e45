import ClusterAPI
import ClusterCore
import Foundation
import Hypervisor

/// Which host paths a VM, a pool or an XML file may name: inside the configured directories, checked as given
/// and with symlinks resolved.
extension LocalController {
    /// Every directory a VM may refer to: the image pool, the volume pools and the configured disk directories.
    var pathPolicy: PathPolicy {
        PathPolicy(allowedDirectories: ([config.imagePool.path] + config.pools.map(\.path) + settings.diskDirectories)
            .map(Self.resolved))
    }

    /// Where pools may be: inside the storage roots, outside the system trees and the state directory.
    var storagePolicy: StoragePolicy {
        StoragePolicy(roots: settings.storageRoots.map(Self.resolved), stateDirectory: Self.resolved(settings.stateDirectory),
                      defaultImagePool: Self.resolved(settings.stateDirectory + "/images"))
    }

    /// The symlink-free form of a path: the longest prefix that exists, resolved, with the rest appended (so a
    /// directory not made yet under a symlink resolves too). Lexically normalised first.
    static func resolved(_ path: String) -> String {
        var existing = PathPolicy.normalize(path)
        var rest: [String] = []
        while true {
            if let real = realpath(existing, nil) {
                defer { free(real) }
                let base = String(cString: real)
                return rest.isEmpty ? base : PathPolicy.normalize(base + "/" + rest.reversed().joined(separator: "/"))
            }
            guard existing != "/", let slash = existing.lastIndex(of: "/") else { return PathPolicy.normalize(path) }
            rest.append(String(existing[existing.index(after: slash)...]))
            existing = slash == existing.startIndex ? "/" : String(existing[..<slash])
        }
    }

    /// Every host path, storage volume and emulator a domain names, checked as given and with symlinks resolved.
    /// The VM-disk pool is no place a template may name: only the VM's own `volumes` there are allowed.
    func checkPaths(_ description: DomainDescription, volumes: [VMVolume] = []) throws(DozeError) {
        let policy = pathPolicy
        let own = Set(volumes.map { volumePoolPath + "/" + $0.name })
        for (what, path) in description.hostPaths where !own.contains(path) {
            try policy.check(path, what: what)
            try policy.check(Self.resolved(path), what: what)   // a symlink must not lead outside either
        }
        let pools = Set(config.pools.map { Self.libvirtPoolName($0.uuid) })
        for (pool, volume) in description.volumes {
            try StoragePolicy.checkVolume(pool: pool, volume: volume, pools: pools)
        }
        if let emulator = description.emulator {
            try StoragePolicy.checkEmulator(emulator)
            try StoragePolicy.checkEmulator(Self.resolved(emulator))
        }
    }

    func allowedXMLFile(_ fileName: String) throws(DozeError) -> String {
        guard let dir = settings.xmlDirectory else {
            throw DozeError(.badRequest, "this controller has no XML directory: start it with --xml-dir DIR")
        }
        try Validation.fileName(fileName)
        let path = dir + "/" + fileName
        try PathPolicy(allowedDirectories: [Self.resolved(dir)]).check(Self.resolved(path), what: "XML file")
        return path
    }
}
