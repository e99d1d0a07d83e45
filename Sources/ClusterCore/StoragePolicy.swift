/// Where a controller may put a volume pool or its image pool, and what a domain may name as its emulator and
/// its storage volumes. Pure arithmetic on paths the shell has already resolved (symlinks followed): every path
/// VMs may use widens with each pool, so a pool must never cover the host's system trees or the controller's own
/// state, and never overlap another pool.
public struct StoragePolicy: Sendable, Equatable {
    /// Operator-set allow-roots (`--storage-root`, resolved). When any is set, a pool must lie inside one.
    public var roots: [String]
    /// The controller's state directory (resolved): its configuration, journal and metrics.
    public var stateDirectory: String
    /// The default image pool (`STATE/images`): the one place inside the state directory a pool may be.
    public var defaultImagePool: String

    /// Trees that hold the system, and anything inside them. `/var/lib/libvirt` is libvirt's: a pool there needs
    /// an explicit `--storage-root`.
    public static let systemTrees = ["/etc", "/proc", "/sys", "/dev", "/boot", "/usr", "/bin", "/sbin", "/lib", "/lib32",
                                     "/lib64", "/libx32", "/root", "/run", "/var/run", "/var/log", "/var/spool",
                                     "/var/cache", "/var/lib/libvirt", "/var/lib/dpkg", "/var/lib/apt"]
    /// Directories that hold others' files: not a pool themselves (all of /tmp would count as one), though a
    /// directory inside them may be.
    public static let sharedParents = ["/", "/var", "/var/lib", "/home", "/tmp", "/var/tmp", "/srv", "/opt", "/mnt",
                                       "/media"]

    public init(roots: [String], stateDirectory: String, defaultImagePool: String) {
        self.roots = roots.map(PathPolicy.normalize)
        self.stateDirectory = PathPolicy.normalize(stateDirectory)
        self.defaultImagePool = PathPolicy.normalize(defaultImagePool)
    }

    /// True when `path` is `dir` or inside it (both normalised).
    public static func contains(_ dir: String, _ path: String) -> Bool {
        path == dir || path.hasPrefix(dir == "/" ? "/" : dir + "/")
    }

    /// Checks a pool path, `resolved` being its normalised, symlink-free form. `others`: the pools (and image
    /// pool) it must not overlap, by what they are and their resolved paths. `what` names the pool in errors.
    public func checkPool(_ resolved: String, what: String, others: [(what: String, path: String)]) throws(DozeError) {
        let path = PathPolicy.normalize(resolved)
        let inRoot = roots.contains { Self.contains($0, path) }
        if !roots.isEmpty, !inRoot {
            throw DozeError(.forbidden, "\(what) '\(path)' is outside the storage roots (\(roots.joined(separator: ", "))); "
                + "an operator adds one with --storage-root")
        }
        if !inRoot {
            if let tree = Self.systemTrees.first(where: { Self.contains($0, path) }) {
                throw DozeError(.forbidden, "\(what) '\(path)' is inside the system tree \(tree); "
                    + "only a directory under a --storage-root may be there")
            }
            if Self.sharedParents.contains(path) {
                throw DozeError(.forbidden, "\(what) '\(path)' is a shared system directory; use a directory of its own inside it")
            }
        }
        if path != defaultImagePool {
            if Self.contains(stateDirectory, path) {
                throw DozeError(.forbidden, "\(what) '\(path)' is inside the controller's state directory \(stateDirectory)")
            }
            if Self.contains(path, stateDirectory) {
                throw DozeError(.forbidden, "\(what) '\(path)' contains the controller's state directory \(stateDirectory)")
            }
        }
        for other in others {
            let otherPath = PathPolicy.normalize(other.path)
            if Self.contains(otherPath, path) || Self.contains(path, otherPath) {
                throw DozeError(.conflict, "\(what) '\(path)' overlaps \(other.what) at \(otherPath)")
            }
        }
    }

    /// Binaries a domain may name as `<emulator>`: QEMU's, in the directories distributions install them to.
    public static let emulatorDirectories = ["/usr/bin", "/usr/local/bin", "/usr/libexec", "/usr/lib/qemu"]

    /// Checks an `<emulator>` path (resolved by the shell as well, so a symlink cannot lead elsewhere).
    public static func checkEmulator(_ path: String) throws(DozeError) {
        let normalized = PathPolicy.normalize(path)
        let name = normalized.split(separator: "/").last.map(String.init) ?? ""
        let dir = String(normalized.dropLast(name.count + 1))
        let isQEMU = name.hasPrefix("qemu-system-") || name == "qemu-kvm" || name == "kvm"
        guard path.hasPrefix("/"), isQEMU, emulatorDirectories.contains(dir) else {
            throw DozeError(.forbidden, "emulator '\(path)' is not a QEMU system emulator in \(emulatorDirectories.joined(separator: ", "))")
        }
    }

    /// Checks a `<disk type='volume'>` source: `pool` must be one of `pools` (the libvirt names of this
    /// controller's pools), and `volume` a plain file name inside it.
    public static func checkVolume(pool: String, volume: String, pools: Set<String>) throws(DozeError) {
        guard pools.contains(pool) else {
            let known = pools.isEmpty ? "it has none" : "its pools: \(pools.sorted().joined(separator: ", "))"
            throw DozeError(.forbidden, "storage pool '\(pool)' is not a pool of this controller (\(known))")
        }
        guard !volume.isEmpty, volume != ".", volume != "..", !volume.contains("/"), !volume.contains("\0") else {
            throw DozeError(.forbidden, "storage volume '\(volume)' must be a file name inside pool '\(pool)', without '/'")
        }
    }
}
