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

    /// Parses a domain XML. Throws `.invalidSpec` with a message naming what is wrong.
    public init(xml: String) throws(HypervisorError) {
        try Self.checkWellFormed(xml)
        let doc: XMLDocument
        do {
            doc = try XMLDocument(xmlString: xml, options: [])
        } catch {
            throw HypervisorError(.invalidSpec, "malformed XML: \(Self.describe(error))")
        }
        guard let root = doc.rootElement(), root.name == "domain" else {
            throw HypervisorError(.invalidSpec, "the root element must be <domain>")
        }
        guard let type = root.attribute(forName: "type")?.stringValue, !type.isEmpty else {
            throw HypervisorError(.invalidSpec, "<domain> needs a type attribute (e.g. type='kvm')")
        }
        guard let name = Self.text(root, "name"), !name.isEmpty else {
            throw HypervisorError(.invalidSpec, "the domain has no <name>")
        }
        self.name = name
        self.type = type
        self.uuid = Self.text(root, "uuid")
        let vcpuText = Self.text(root, "vcpu") ?? "1"
        let vcpuElement = Self.elements(root, "vcpu").first
        let current = vcpuElement?.attribute(forName: "current")?.stringValue
        guard let vcpus = Int(current ?? vcpuText), vcpus > 0, vcpus <= Self.maxVCPUs else {
            throw HypervisorError(.invalidSpec, "<vcpu> must be an integer from 1 to \(Self.maxVCPUs), got '\(current ?? vcpuText)'")
        }
        self.vcpus = vcpus
        let memoryElement = Self.elements(root, "currentMemory").first ?? Self.elements(root, "memory").first
        guard let memoryElement, let memoryText = memoryElement.stringValue?.trimmingCharacters(in: .whitespaces),
              let amount = UInt64(memoryText), amount > 0
        else { throw HypervisorError(.invalidSpec, "the domain needs a positive <memory>") }
        let unit = memoryElement.attribute(forName: "unit")?.stringValue ?? "KiB"
        guard let kib = Self.kibibytes(amount, unit: unit) else {
            throw HypervisorError(.invalidSpec, "unknown memory unit '\(unit)' or a size that overflows")
        }
        guard kib <= Self.maxMemoryKiB else {
            throw HypervisorError(.invalidSpec, "memory of \(kib) KiB is above the \(Self.maxMemoryKiB) KiB (16 TiB) limit")
        }
        self.memoryKiB = kib
        var targets: [String] = [], macs: [String] = []
        for iface in Self.elements(root, "devices/interface") {
            if let dev = Self.elements(iface, "target").first?.attribute(forName: "dev")?.stringValue { targets.append(dev) }
            if let mac = Self.elements(iface, "mac").first?.attribute(forName: "address")?.stringValue { macs.append(mac) }
        }
        self.interfaceTargets = targets
        self.macAddresses = macs
        var paths: [(String, String)] = []
        for disk in Self.elements(root, "devices/disk") {
            if let source = Self.elements(disk, "source").first {
                for attr in ["file", "dev", "dir"] {
                    if let p = source.attribute(forName: attr)?.stringValue { paths.append(("disk source", p)) }
                }
            }
        }
        for fs in Self.elements(root, "devices/filesystem") {
            if let source = Self.elements(fs, "source").first {
                for attr in ["dir", "file"] {
                    if let p = source.attribute(forName: attr)?.stringValue { paths.append(("filesystem source", p)) }
                }
            }
        }
        for what in ["kernel", "initrd", "loader"] {
            if let p = Self.text(root, "os/\(what)") { paths.append((what, p)) }
        }
        self.hostPaths = paths
    }

    /// `XMLDocument` on Linux recovers from broken input (`<domain` parses as a domain); `XMLParser` does not.
    public static func checkWellFormed(_ xml: String) throws(HypervisorError) {
        let parser = XMLParser(data: Data(xml.utf8))
        parser.shouldResolveExternalEntities = false
        let balance = ElementBalance()
        parser.delegate = balance
        let parsed = parser.parse()
        if parsed && (balance.depth != 0 || balance.roots != 1) {
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

    static func elements(_ node: XMLElement, _ path: String) -> [XMLElement] {
        var current: [XMLElement] = [node]
        for step in path.split(separator: "/") {
            current = current.flatMap { $0.elements(forName: String(step)) }
        }
        return current
    }

    static func text(_ node: XMLElement, _ path: String) -> String? {
        elements(node, path).first?.stringValue?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func describe(_ error: any Error) -> String {
        let ns = error as NSError
        if let detail = ns.userInfo[NSLocalizedDescriptionKey] as? String { return detail }
        return "\(ns.domain) error \(ns.code)"
    }
}

/// Counts open elements: libxml2's push parser reports success for a document cut off mid-element.
private final class ElementBalance: NSObject, XMLParserDelegate {
    var depth = 0
    var roots = 0
    func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                qualifiedName qName: String?, attributes attributeDict: [String: String] = [:]) {
        if depth == 0 { roots += 1 }
        depth += 1
    }
    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName qName: String?) {
        depth -= 1
    }
}
