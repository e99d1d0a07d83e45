import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

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
    /// Every host path the domain refers to: disk and filesystem sources, kernel, initrd, loader.
    public var hostPaths: [(what: String, path: String)]

    public static func == (l: Self, r: Self) -> Bool {
        l.name == r.name && l.uuid == r.uuid && l.type == r.type && l.vcpus == r.vcpus && l.memoryKiB == r.memoryKiB
            && l.interfaceTargets == r.interfaceTargets && l.macAddresses == r.macAddresses
            && l.hostPaths.map(\.path) == r.hostPaths.map(\.path)
    }

    /// Parses a domain XML in one streaming pass (a controller reads one per VM it starts: building a DOM cost
    /// more than libvirt's own parse). Throws `.invalidSpec` with a message naming what is wrong.
    public init(xml: String) throws(HypervisorError) {
        let parser = XMLParser(data: Data(xml.utf8))
        parser.shouldResolveExternalEntities = false
        let reader = DomainReader()
        parser.delegate = reader
        let parsed = parser.parse()
        if !parsed {
            let line = parser.lineNumber, column = parser.columnNumber
            let reason = parser.parserError.map { Self.describe($0) } ?? "parse error"
            throw HypervisorError(.invalidSpec, "malformed XML at line \(line), column \(column): \(reason)")
        }
        // libxml2's push parser reports success for a document cut off mid-element.
        guard reader.depth == 0, reader.roots == 1 else {
            throw HypervisorError(.invalidSpec, "malformed XML: the document is truncated or has no single root element")
        }
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
        self.hostPaths = reader.devicePaths + ["kernel", "initrd", "loader"].compactMap { what in
            reader.texts["os/" + what].map { (what, $0) }
        }
    }

    /// Checks only that `xml` is one well-formed element tree (`XMLDocument` on Linux recovers from broken input).
    public static func checkWellFormed(_ xml: String) throws(HypervisorError) {
        let parser = XMLParser(data: Data(xml.utf8))
        parser.shouldResolveExternalEntities = false
        let reader = DomainReader()
        parser.delegate = reader
        let parsed = parser.parse()
        if parsed && (reader.depth != 0 || reader.roots != 1) {
            throw HypervisorError(.invalidSpec, "malformed XML: the document is truncated or has no single root element")
        }
        if !parsed {
            let line = parser.lineNumber, column = parser.columnNumber
            let reason = parser.parserError.map { Self.describe($0) } ?? "parse error"
            throw HypervisorError(.invalidSpec, "malformed XML at line \(line), column \(column): \(reason)")
        }
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

    static func describe(_ error: any Error) -> String {
        let ns = error as NSError
        if let detail = ns.userInfo[NSLocalizedDescriptionKey] as? String { return detail }
        return "\(ns.domain) error \(ns.code)"
    }
}

/// Collects what `DomainDescription` needs while libxml2 streams through the document: the texts and attributes
/// of a few known paths below the root, first match wins (as a DOM lookup of the first child would), and the
/// element balance (libxml2 reports success for a document cut off mid-element).
private final class DomainReader: NSObject, XMLParserDelegate {
    var depth = 0
    var roots = 0
    var rootName: String?
    var rootType: String?
    /// Trimmed texts by path below the root: `name`, `uuid`, `vcpu`, `memory`, `currentMemory`, `os/kernel`, …
    var texts: [String: String] = [:]
    var units: [String: String] = [:]
    var vcpuCurrent: String?
    var interfaceTargets: [String] = []
    var macAddresses: [String] = []
    var devicePaths: [(String, String)] = []

    private static let textPaths: Set<String> = ["name", "uuid", "vcpu", "memory", "currentMemory", "os/kernel", "os/initrd", "os/loader"]
    private var path: [String] = []
    private var capturing: String?
    private var buffer = ""
    /// One source (disk, filesystem) and one target and MAC (interface) per device: the first.
    private var deviceSeen: Set<String> = []

    func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                qualifiedName qName: String?, attributes: [String: String] = [:]) {
        if depth == 0 {
            roots += 1
            if roots == 1 {
                rootName = elementName
                rootType = attributes["type"]
            }
        }
        depth += 1
        guard roots == 1, depth > 1 else { return }
        path.append(elementName)
        let key = path.joined(separator: "/")
        if Self.textPaths.contains(key), texts[key] == nil, capturing == nil {
            capturing = key
            buffer = ""
            if key == "vcpu" { vcpuCurrent = attributes["current"] }
            if key == "memory" || key == "currentMemory" { units[key] = attributes["unit"] }
        }
        guard path.count == 3, path[0] == "devices" else {
            if path.count == 2, path[0] == "devices" { deviceSeen = [] }   // a new device
            return
        }
        switch (path[1], elementName) {
        case ("interface", "target") where deviceSeen.insert("target").inserted:
            if let dev = attributes["dev"] { interfaceTargets.append(dev) }
        case ("interface", "mac") where deviceSeen.insert("mac").inserted:
            if let mac = attributes["address"] { macAddresses.append(mac) }
        case ("disk", "source") where deviceSeen.insert("source").inserted:
            for a in ["file", "dev", "dir"] { if let p = attributes[a] { devicePaths.append(("disk source", p)) } }
        case ("filesystem", "source") where deviceSeen.insert("source").inserted:
            for a in ["dir", "file"] { if let p = attributes[a] { devicePaths.append(("filesystem source", p)) } }
        default:
            break
        }
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        if capturing != nil { buffer += string }
    }

    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName qName: String?) {
        depth -= 1
        guard roots == 1, depth >= 1, !path.isEmpty else { return }
        if let key = capturing, key == path.joined(separator: "/") {
            texts[key] = buffer.trimmingCharacters(in: .whitespacesAndNewlines)
            capturing = nil
        }
        path.removeLast()
    }
}
