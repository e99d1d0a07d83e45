import Foundation

/// What the controller reads out of a libvirt domain XML, without changing it. The XML itself is passed to
/// libvirt exactly as given, so direct-kernel-boot and unikernel domains (`<kernel>`, `<filesystem>`) go
/// through untouched.
public struct DomainDescription: Sendable, Equatable {
    public var name: String
    public var uuid: String?
    public var type: String
    public var vcpus: Int
    public var memoryKiB: UInt64
    public var interfaceTargets: [String]
    public var macAddresses: [String]
    /// Every host path the domain refers to: device sources (disks and their backing stores, filesystems,
    /// serial and console files, channel sockets), device logs, kernel, initrd, loader, NVRAM, device tree.
    public var hostPaths: [(what: String, path: String)]
    /// Storage volumes named by pool and volume (`<disk type='volume'><source pool=… volume=…/>`).
    public var volumes: [(pool: String, volume: String)]
    /// The emulator binary the domain asks for (`<devices><emulator>`), if it names one.
    public var emulator: String?

    public static func == (l: Self, r: Self) -> Bool {
        l.name == r.name && l.uuid == r.uuid && l.type == r.type && l.vcpus == r.vcpus && l.memoryKiB == r.memoryKiB
            && l.interfaceTargets == r.interfaceTargets && l.macAddresses == r.macAddresses
            && l.hostPaths.map(\.path) == r.hostPaths.map(\.path) && l.emulator == r.emulator
            && l.volumes.map { $0.pool + "/" + $0.volume } == r.volumes.map { $0.pool + "/" + $0.volume }
    }

    /// Parses a domain XML in one streaming pass (a controller reads one per VM it starts: building a DOM cost
    /// more than libvirt's own parse). Throws `.invalidSpec` with a message naming what is wrong.
    public init(xml: String) throws(HypervisorError) {
        let reader = try Self.read(xml)
        guard reader.rootName == "domain" else {
            throw HypervisorError(.invalidSpec, "the root element must be <domain>")
        }
        guard let type = reader.rootType, !type.isEmpty else {
            throw HypervisorError(.invalidSpec, "<domain> needs a type attribute (e.g. type='kvm')")
        }
        guard let name = reader.texts["name"], !name.isEmpty else {
            throw HypervisorError(.invalidSpec, "the domain has no <name>")
        }
        self.name = name
        self.type = type
        self.uuid = reader.texts["uuid"]
        let vcpuText = reader.texts["vcpu"] ?? "1"
        let current = reader.vcpuCurrent
        guard let vcpus = Int(current ?? vcpuText), vcpus > 0, vcpus <= Self.maxVCPUs else {
            throw HypervisorError(.invalidSpec, "<vcpu> must be an integer from 1 to \(Self.maxVCPUs), got '\(current ?? vcpuText)'")
        }
        self.vcpus = vcpus
        let memory = reader.texts["currentMemory"].map { ($0, reader.units["currentMemory"]) }
            ?? reader.texts["memory"].map { ($0, reader.units["memory"]) }
        guard let (memoryText, unitAttribute) = memory, let amount = UInt64(memoryText), amount > 0
        else { throw HypervisorError(.invalidSpec, "the domain needs a positive <memory>") }
        let unit = unitAttribute ?? "KiB"
        guard let kib = Self.kibibytes(amount, unit: unit) else {
            throw HypervisorError(.invalidSpec, "unknown memory unit '\(unit)' or a size that overflows")
        }
        guard kib <= Self.maxMemoryKiB else {
            throw HypervisorError(.invalidSpec, "memory of \(kib) KiB is above the \(Self.maxMemoryKiB) KiB (16 TiB) limit")
        }
        self.memoryKiB = kib
        self.interfaceTargets = reader.interfaceTargets
        self.macAddresses = reader.macAddresses
        self.hostPaths = reader.devicePaths + ["kernel", "initrd", "loader", "nvram", "dtb"].compactMap { what in
            reader.texts["os/" + what].map { (what, $0) }
        }
        self.volumes = reader.volumes
        self.emulator = reader.texts["devices/emulator"]
    }

    /// Checks only that `xml` is one well-formed element tree no deeper than `maxDepth` (`XMLDocument` on Linux
    /// recovers from broken input).
    public static func checkWellFormed(_ xml: String) throws(HypervisorError) {
        _ = try read(xml)
    }

    /// The deepest nesting accepted. A real domain is under 10 levels deep; libvirt refuses more than 256, and
    /// deep documents only cost time, so they are refused here, at once, before libvirt sees them.
    public static let maxDepth = 64

    /// One streaming pass over `xml`: well-formed, one root, at most `maxDepth` deep, or an error that says what
    /// is wrong and where.
    private static func read(_ xml: String) throws(HypervisorError) -> DomainReader {
        var reader = DomainReader()
        do {
            try XMLScanner.scan(xml, maxDepth: maxDepth) { reader.handle($0) }
        } catch {
            throw HypervisorError(.invalidSpec, "malformed XML at \(error)")
        }
        return reader
    }

    /// The largest sizes accepted: far above any real host, far below integer overflow.
    public static let maxVCPUs = 4096
    public static let maxMemoryKiB: UInt64 = 1 << 34   // 16 TiB

    /// KiB for `amount` of `unit`; nil for an unknown unit or an amount that overflows.
    static func kibibytes(_ amount: UInt64, unit: String) -> UInt64? {
        func times(_ factor: UInt64) -> UInt64? {
            let (v, overflow) = amount.multipliedReportingOverflow(by: factor)
            return overflow ? nil : v
        }
        switch unit.lowercased() {
        case "b", "bytes": return amount / 1024 + (amount % 1024 == 0 ? 0 : 1)
        case "k", "kib": return amount
        case "kb": return times(1000).map { $0 / 1024 + ($0 % 1024 == 0 ? 0 : 1) }
        case "m", "mib": return times(1024)
        case "mb": return times(1_000_000).map { $0 / 1024 }
        case "g", "gib": return times(1 << 20)
        case "gb": return times(1_000_000_000).map { $0 / 1024 }
        case "t", "tib": return times(1 << 30)
        default: return nil
        }
    }
}

/// Collects what `DomainDescription` needs from the scanner's events: the texts and attributes of a few known
/// paths below the root, first match wins (as a DOM lookup of the first child would), and every host path a
/// device names. Each event costs constant work: no path is rebuilt from the root.
private struct DomainReader {
    var rootName: String?
    var rootType: String?
    /// Trimmed texts by path below the root: `name`, `uuid`, `vcpu`, `memory`, `currentMemory`, `os/kernel`, …
    var texts: [String: String] = [:]
    var units: [String: String] = [:]
    var vcpuCurrent: String?
    var interfaceTargets: [String] = []
    var macAddresses: [String] = []
    var devicePaths: [(String, String)] = []
    var volumes: [(pool: String, volume: String)] = []

    /// Texts read, by path; none is deeper than two levels below the root, so keys are built only that far.
    private static let textPaths: Set<String> = ["name", "uuid", "vcpu", "memory", "currentMemory", "os/kernel", "os/initrd",
                                                 "os/loader", "os/nvram", "os/dtb", "devices/emulator"]
    /// Attributes of a device's `<source>` (at any depth: backing stores, chardevs) that name a host path.
    private static let sourcePathAttributes = ["file", "dev", "dir", "path", "socket"]
    /// Element names below the root.
    private var path: [String] = []
    private var depth = 0
    private var capturing: (key: String, depth: Int)?
    private var buffer = ""
    /// One target and MAC (interface) per device: the first.
    private var deviceSeen: Set<String> = []

    mutating func handle(_ event: XMLScanner.Event) {
        switch event {
        case .start(let name, let attributes): start(name, attributes)
        case .end: end()
        case .text(let text): if capturing != nil { buffer += text }
        }
    }

    private mutating func start(_ elementName: String, _ attributes: [String: String]) {
        depth += 1
        if depth == 1 {
            rootName = elementName
            rootType = attributes["type"]
            return
        }
        path.append(elementName)
        if path.count <= 2, capturing == nil {
            let key = path.count == 1 ? elementName : path[0] + "/" + elementName
            if Self.textPaths.contains(key), texts[key] == nil {
                capturing = (key, path.count)
                buffer = ""
                if key == "vcpu" { vcpuCurrent = attributes["current"] }
                if key == "memory" || key == "currentMemory" { units[key] = attributes["unit"] }
            }
        }
        guard path.count >= 2, path[0] == "devices" else { return }
        if path.count == 2 { deviceSeen = [] }   // a new device
        let device = path[1]
        switch elementName {
        case "source" where path.count >= 3:
            for attribute in Self.sourcePathAttributes {
                // An interface's source dev is a network device (type='direct'), not a file.
                if attribute == "dev", device == "interface" { continue }
                if let value = attributes[attribute] { devicePaths.append(("\(device) source", value)) }
            }
            if attributes["pool"] != nil || attributes["volume"] != nil {
                volumes.append((attributes["pool"] ?? "", attributes["volume"] ?? ""))
            }
        case "log" where path.count >= 3:
            if let file = attributes["file"] { devicePaths.append(("\(device) log", file)) }
        case "host" where path.count >= 4 && path[path.count - 2] == "source":
            if let socket = attributes["socket"] { devicePaths.append(("\(device) source socket", socket)) }
        case "target" where path.count == 3 && device == "interface" && deviceSeen.insert("target").inserted:
            if let dev = attributes["dev"] { interfaceTargets.append(dev) }
        case "mac" where path.count == 3 && device == "interface" && deviceSeen.insert("mac").inserted:
            if let mac = attributes["address"] { macAddresses.append(mac) }
        default:
            break
        }
    }

    private mutating func end() {
        depth -= 1
        guard !path.isEmpty else { return }
        if let (key, level) = capturing, level == path.count {
            texts[key] = buffer.trimmingCharacters(in: .whitespacesAndNewlines)
            capturing = nil
        }
        path.removeLast()
    }
}
