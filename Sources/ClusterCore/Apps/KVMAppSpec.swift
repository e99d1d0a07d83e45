// Seed 000's kvm-apps, as Doze understands them: an app is N identical VMs built from one image of the hosts'
// image pools, optionally constrained to some local controllers. These are the checked values; the JSON shapes
// are in ClusterWire/AppTypes.swift.

/// A kvm-app's identity, `name.runas.cluster` (seed 000: `POST /v1/kvm-apps?name=demo&runas=bbk&cluster=bj`).
public struct KVMAppID: Sendable, Hashable, Codable, CustomStringConvertible {
    public var name: String
    public var runAs: String
    public var cluster: String

    /// Each part is letters, digits, '-' and '_': no dots, because they separate the parts of the id and of the
    /// VM names `<index>.<id>`, which must read back unambiguously.
    public init(name: String, runAs: String, cluster: String) throws(DozeError) {
        for (what, part) in [("name", name), ("runas", runAs), ("cluster", cluster)] {
            guard !part.isEmpty else { throw DozeError(.badRequest, "\(what) is empty: give ?name=…&runas=…&cluster=…") }
            guard part.utf8.count <= 24 else { throw DozeError(.badRequest, "\(what) '\(part)' is longer than 24 bytes") }
            let ok = part.unicodeScalars.allSatisfy { scalar in
                (scalar >= "a" && scalar <= "z") || (scalar >= "A" && scalar <= "Z") || (scalar >= "0" && scalar <= "9")
                    || scalar == "-" || scalar == "_"
            }
            guard ok else {
                throw DozeError(.badRequest, "\(what) '\(part)' is invalid: use letters, digits, '-' and '_' (dots separate the parts of an app id)")
            }
        }
        self.name = name
        self.runAs = runAs
        self.cluster = cluster
    }

    public var id: String { "\(name).\(runAs).\(cluster)" }
    public var description: String { id }

    /// The VM (and libvirt domain) name of the app's `index`-th instance: `0.demo.bbk.bj`, as the seed's task names.
    public func vmName(_ index: Int) -> String { "\(index).\(id)" }
}

/// `{attribute, operator, value}`: where an app's VMs may run. Only `hostname` is known: a local controller's
/// hostname is the host of its control address (what Snooze's `LocalControllerDescription.hostname` shows).
public struct KVMAppConstraint: Sendable, Equatable, Codable, CustomStringConvertible {
    public enum Operator: String, Sendable, Codable, CaseIterable {
        case equals = "=="
        case notEquals = "!="
        /// A regular expression found anywhere in the value (seed: `hostname ~= "107"` picks 192.168.0.107);
        /// anchor it with `^…$` for a whole match.
        case matches = "~="
    }

    public static let attributes = ["hostname"]

    public var attribute: String
    public var op: Operator
    public var value: String

    /// Checks a constraint as a client wrote it: a known attribute and operator, a regex that compiles.
    public init(attribute: String, operator text: String, value: String) throws(DozeError) {
        guard Self.attributes.contains(attribute) else {
            throw DozeError(.badRequest, "unknown constraint attribute '\(attribute)'; known: \(Self.attributes.joined(separator: ", "))")
        }
        guard let op = Operator(rawValue: text) else {
            throw DozeError(.badRequest, "unknown constraint operator '\(text)' in \(attribute) \(text) \"\(value)\"; use ==, != or ~= (regex)")
        }
        guard value.utf8.count <= 256 else { throw DozeError(.badRequest, "constraint value is longer than 256 bytes") }
        if op == .matches {
            do { _ = try Regex(value) } catch {
                throw DozeError(.badRequest, "constraint \(attribute) ~= \"\(value)\": not a valid regular expression: \(error)")
            }
        }
        self.attribute = attribute
        self.op = op
        self.value = value
    }

    public func isSatisfied(by host: KVMAppHost) -> Bool {
        let actual = host.hostname   // the only attribute so far
        switch op {
        case .equals: return actual == value
        case .notEquals: return actual != value
        case .matches:
            guard let regex = try? Regex(value) else { return false }   // checked at creation
            return actual.firstMatch(of: regex) != nil
        }
    }

    public var description: String { "\(attribute) \(op.rawValue) \"\(value)\"" }
}

/// What a kvm-app asks for, checked.
public struct KVMAppSpec: Sendable, Equatable, Codable {
    public enum ImageType: String, Sendable, Codable, CaseIterable { case iso, qcow2 }

    public static let maxCount = 1000
    public static let maxConstraints = 16

    public var count: Int
    public var cpus: Int
    public var memoryMiB: Int
    /// Each VM gets one data volume (qcow2) of this size on its host, deleted with it; 0: none.
    public var diskGiB: Int
    public var imageType: ImageType
    /// A file name in each local controller's image pool.
    public var imageURI: String
    /// Gives each VM a VNC console with this password; nil: no console.
    public var vncPassword: String?
    public var constraints: [KVMAppConstraint]
    /// Seed 000's executor: accepted and shown back; Doze's local controllers run the VMs themselves.
    public var executorURL: String?
    public var executorCommand: String?
    public var desc: String
    /// Its VMs are highly available: restarted on another host when theirs dies and is fenced. nil (off) in
    /// records written before the option existed.
    public var ha: Bool?
    /// Seed 004: the switches each VM gets a NIC on, in order; nil: none (older records too).
    public var networks: [String]?

    public init(count: Int, cpus: Int, memoryMiB: Int, diskGiB: Int, imageType: ImageType, imageURI: String,
                vncPassword: String? = nil, constraints: [KVMAppConstraint] = [], executorURL: String? = nil,
                executorCommand: String? = nil, desc: String = "", ha: Bool? = nil) {
        self.count = count
        self.cpus = cpus
        self.memoryMiB = memoryMiB
        self.diskGiB = diskGiB
        self.imageType = imageType
        self.imageURI = imageURI
        self.vncPassword = vncPassword
        self.constraints = constraints
        self.executorURL = executorURL
        self.executorCommand = executorCommand
        self.desc = desc
        self.ha = ha
    }

    /// Range and format checks; each refusal names the field. The submission pipeline checks the upper limits
    /// of vCPUs and memory against what libvirt accepts.
    public func validate(for app: KVMAppID) throws(DozeError) {
        guard count >= 1 else { throw DozeError(.badRequest, "count must be >= 1, got \(count)") }
        guard count <= Self.maxCount else { throw DozeError(.badRequest, "count must be <= \(Self.maxCount), got \(count)") }
        guard cpus >= 1 else { throw DozeError(.badRequest, "cpus must be >= 1, got \(cpus)") }
        // The cap keeps mems * 1024 (KiB) far from overflowing; libvirt's own limit is checked later.
        guard memoryMiB >= 1, memoryMiB <= 1 << 32 else { throw DozeError(.badRequest, "mems is in MiB, from 1 to \(1 << 32), got \(memoryMiB)") }
        guard diskGiB >= 0, diskGiB <= 65_536 else { throw DozeError(.badRequest, "disks is in GiB, from 0 to 65536, got \(diskGiB)") }
        guard !imageURI.isEmpty else { throw DozeError(.badRequest, "image.uri is empty: name an image of the hosts' image pool") }
        guard !imageURI.contains("/"), !imageURI.hasPrefix("."), imageURI.utf8.count <= 255 else {
            throw DozeError(.badRequest, "image.uri '\(imageURI)' must be a file name in the hosts' image pool (no '/', no URL; Doze does not fetch images)")
        }
        let ext = imageURI.split(separator: ".").last.map { $0.lowercased() }
        if imageURI.contains("."), let ext, let named = ImageType(rawValue: ext), named != imageType {
            throw DozeError(.badRequest, "image.uri '\(imageURI)' is a .\(ext) file but image.type says \(imageType.rawValue)")
        }
        if let vncPassword {
            // VNC's password authentication uses 8 bytes; a longer one would be cut silently by QEMU.
            guard (1...8).contains(vncPassword.utf8.count), vncPassword.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value < 0x7F }) else {
                throw DozeError(.badRequest, "vnc.password must be 1 to 8 printable ASCII characters (VNC uses no more)")
            }
        }
        guard constraints.count <= Self.maxConstraints else {
            throw DozeError(.badRequest, "at most \(Self.maxConstraints) constraints, got \(constraints.count)")
        }
        let longest = app.vmName(count - 1)
        guard longest.utf8.count <= 64 else {
            throw DozeError(.badRequest, "VM names such as '\(longest)' would exceed 64 bytes: shorten name, runas or cluster")
        }
    }
}

/// A local controller as app placement sees it.
public struct KVMAppHost: Sendable, Equatable {
    public var id: String
    public var hostname: String
    public var total: HostUsage
    public var free: HostUsage

    public init(id: String, hostname: String, total: HostUsage, free: HostUsage) {
        self.id = id
        self.hostname = hostname
        self.total = total
        self.free = free
    }
}
