import Foundation

/// Makes a template written for one hypervisor run on the chosen host: only the root `<domain type='…'>` is
/// rewritten (e.g. `kvm` → `test` on a test-driver host, `kvm` → `qemu` on a TCG host); everything else passes
/// through byte for byte. The change is returned so it is recorded in the VM's metadata, never silent.
public enum TemplateAdaptation {
    public struct Change: Sendable, Equatable, Codable {
        public var from: String
        public var to: String
        public init(from: String, to: String) {
            self.from = from
            self.to = to
        }
        public var description: String { "domain type '\(from)' adapted to '\(to)' for this host" }
    }

    /// `supported`: domain types the host runs, best first (e.g. `["kvm", "qemu"]`, or `["test"]`).
    public static func adapt(_ xml: String, supported: [String]) -> (xml: String, change: Change?) {
        guard let preferred = supported.first,
              let open = xml.firstRange(of: "<domain"),
              let close = xml[open.upperBound...].firstIndex(of: ">") else { return (xml, nil) }
        let tag = xml[open.upperBound..<close]
        for quote in ["'", "\""] {
            guard let start = tag.firstRange(of: "type=\(quote)"),
                  let end = tag[start.upperBound...].firstIndex(of: Character(quote)) else { continue }
            let current = String(tag[start.upperBound..<end])
            if supported.contains(current) { return (xml, nil) }
            var adapted = xml
            adapted.replaceSubrange(start.upperBound..<end, with: preferred)
            return (adapted, Change(from: current, to: preferred))
        }
        return (xml, nil)
    }
}

extension TemplateAdaptation {
    /// Gives the first `<interface>` the MAC derived from the VM's IP (the guest derives its address from it, as
    /// in Snooze). A template without an interface is returned unchanged: the VM simply has no NIC to address.
    public static func settingMAC(_ mac: String, in xml: String) -> String {
        guard let open = xml.firstRange(of: "<interface"),
              let openEnd = xml[open.upperBound...].firstIndex(of: ">") else { return xml }
        // A self-closing `<interface …/>` has no body to hold a <mac>: expand it.
        if xml[xml.index(before: openEnd)] == "/" {
            var out = xml
            let head = xml[open.lowerBound..<xml.index(before: openEnd)]
            out.replaceSubrange(open.lowerBound...openEnd, with: "\(head)><mac address='\(mac)'/></interface>")
            return out
        }
        guard let close = xml[openEnd...].firstRange(of: "</interface>") else { return xml }
        let body = xml[xml.index(after: openEnd)..<close.lowerBound]
        var out = xml
        if let macTag = body.firstRange(of: "<mac"), let macEnd = xml[macTag.upperBound...].firstIndex(of: ">") {
            out.replaceSubrange(macTag.lowerBound...macEnd, with: "<mac address='\(mac)'/>")
        } else {
            out.insert(contentsOf: "<mac address='\(mac)'/>", at: xml.index(after: openEnd))
        }
        return out
    }

    /// The domain XML for a VM built from an image (`name` + `imageId` submissions): one disk, one NIC on the
    /// default network when a MAC is given, a VNC console on every interface when a password is given.
    /// `format` is the image's (qcow2, raw, iso). `extraDisks`: `<disk>` elements added after it (data volumes).
    public static func domainXML(name: String, type: String, vcpus: Int, memoryKiB: Int, imagePath: String, format: String,
                                 mac: String?, vncPassword: String? = nil, extraDisks: [String] = []) -> String {
        let disk: String
        if format == "iso" {
            disk = "<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='\(xmlEscape(imagePath))'/><target dev='hdc' bus='ide'/><readonly/></disk>"
        } else {
            disk = "<disk type='file' device='disk'><driver name='qemu' type='\(format)'/><source file='\(xmlEscape(imagePath))'/><target dev='vda' bus='virtio'/></disk>"
        }
        return domainXML(name: name, type: type, vcpus: vcpus, memoryKiB: memoryKiB, rootDisk: disk,
                         bootDevice: format == "iso" ? "cdrom" : "hd", mac: mac, vncPassword: vncPassword, extraDisks: extraDisks)
    }

    /// The same domain around a root `<disk>` element given whole (an image's overlay volume).
    public static func domainXML(name: String, type: String, vcpus: Int, memoryKiB: Int, rootDisk: String, bootDevice: String,
                                 mac: String?, vncPassword: String? = nil, extraDisks: [String] = []) -> String {
        let nic = mac.map { "<interface type='network'><mac address='\($0)'/><source network='default'/><model type='virtio'/></interface>" } ?? ""
        let vnc = vncPassword.map { "<graphics type='vnc' port='-1' autoport='yes' listen='0.0.0.0' passwd='\(xmlEscape($0))'/>" } ?? ""
        return "<domain type='\(type)'><name>\(xmlEscape(name))</name><memory unit='KiB'>\(memoryKiB)</memory><vcpu>\(vcpus)</vcpu>"
            + "<os><type arch='x86_64'>hvm</type><boot dev='\(bootDevice)'/></os>"
            + "<devices>\(rootDisk)\(extraDisks.joined())\(nic)\(vnc)<serial type='pty'/><console type='pty'/></devices></domain>"
    }
}

extension TemplateAdaptation {
    /// The domain XML with one virtio NIC per switch attachment, on the switch's bridge, added at the end of
    /// `<devices>` (a domain without `<devices>` gets one). Nothing changes without attachments.
    public static func addingInterfaces(_ attachments: [NetworkAttachment], to xml: String) -> String {
        guard !attachments.isEmpty else { return xml }
        let nics = attachments.map {
            "<interface type='bridge'><mac address='\(xmlEscape($0.mac))'/><source bridge='\(xmlEscape($0.bridge))'/><model type='virtio'/></interface>"
        }.joined()
        if let close = xml.range(of: "</devices>", options: .backwards) {
            return xml.replacingCharacters(in: close.lowerBound..<close.lowerBound, with: nics)
        }
        if let selfClosing = xml.range(of: "<devices/>") {
            return xml.replacingCharacters(in: selfClosing, with: "<devices>\(nics)</devices>")
        }
        guard let end = xml.range(of: "</domain>", options: .backwards) else { return xml }
        return xml.replacingCharacters(in: end.lowerBound..<end.lowerBound, with: "<devices>\(nics)</devices>")
    }
}

/// `text` as XML character data or an attribute value in either quote: the five predefined entities escaped.
public func xmlEscape(_ text: String) -> String {
    var out = ""
    out.reserveCapacity(text.count)
    for character in text {
        switch character {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "'": out += "&apos;"
        case "\"": out += "&quot;"
        default: out.append(character)
        }
    }
    return out
}
