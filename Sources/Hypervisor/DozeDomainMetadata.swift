import ClusterCore
import Foundation

/// Doze's own element in a domain's `<metadata>`: what a VM carries from host to host (migration) and across
/// controller restarts, since libvirt keeps it with the domain. Written as one empty element,
/// `<vm rx='…' tx='…' ip='…' adapted='…' def='…' load-vcpus='…' load-mem='…' ha='1' vols='…'/>`, in the namespace `namespace`.
public struct DozeDomainMetadata: Sendable, Equatable {
    public static let namespace = "urn:doze:vm:1"
    /// The prefix libvirt gives the element.
    public static let key = "doze"

    /// Network demand (bytes per second) the VM was submitted with.
    public var rxBytes: Double
    public var txBytes: Double
    public var ipAddress: String
    /// What was changed in the submitted template to run it here.
    public var adaptations: [String]
    /// SHA-256 of the domain XML the VM was created from: a retried identical create finds it by this.
    public var definitionDigest: String?
    /// Load declared on a test-driver host (`POST /v1/vms/{name}/load`): kept here so it outlives a restart
    /// and travels with a migration. Written only when declared.
    public var syntheticLoad = SyntheticLoad()
    /// Submitted with `ha: true`: the cluster restarts it elsewhere if this host dies. Written only when set.
    public var highlyAvailable = false
    /// NICs on seed-004 switches (`nets='name|vni|ip/len|gateway|mac;…'`): the destination of a migration and a
    /// restarted controller set up the host's switch pieces from this. Written only when there are some.
    public var networks: [NetworkAttachment] = []
    /// The volumes Doze created for the VM in the host's VM-disk pool (its overlay, its data volumes): deleted
    /// with it, created again on a migration's destination. Written only when there are some.
    public var volumes: [VMVolume] = []
    /// The tenant that owns the VM (set by the leader from the submitter's token). Written only when set.
    public var tenant: String?

    // Public types get only an internal memberwise initialiser: the controller (another module) needs this one.
    public init(rxBytes: Double = 0, txBytes: Double = 0, ipAddress: String = "", adaptations: [String] = [],
                definitionDigest: String? = nil) {
        self.rxBytes = rxBytes
        self.txBytes = txBytes
        self.ipAddress = ipAddress
        self.adaptations = adaptations
        self.definitionDigest = definitionDigest
    }

    /// Reads the element as libvirt returns it (either quote, any prefix or namespace declaration). Lenient, as
    /// metadata outlives the code that wrote it: a missing or unreadable value reads as its default, and a
    /// document that breaks after the element's start tag still yields the attributes of that tag.
    public init(decoding xml: String) {
        var attributes: [String: String] = [:]
        var sawRoot = false
        try? XMLScanner.scan(xml, maxDepth: 8) { event in
            guard !sawRoot, case .start(_, let rootAttributes) = event else { return }
            sawRoot = true
            attributes = rootAttributes
        }
        self.init(rxBytes: attributes["rx"].flatMap(Double.init) ?? 0,
                  txBytes: attributes["tx"].flatMap(Double.init) ?? 0,
                  ipAddress: attributes["ip"] ?? "",
                  adaptations: attributes["adapted"].map { $0.isEmpty ? [] : $0.components(separatedBy: "; ") } ?? [],
                  definitionDigest: attributes["def"])
        func load(_ name: String) -> Double? { attributes[name].flatMap(Double.init).flatMap { $0.isFinite && $0 >= 0 ? $0 : nil } }
        syntheticLoad = SyntheticLoad(vcpus: load("load-vcpus"), memoryMiB: load("load-mem"))
        highlyAvailable = attributes["ha"] == "1"
        networks = (attributes["nets"] ?? "").split(separator: ";").compactMap(Self.attachment)
        volumes = (attributes["vols"] ?? "").split(separator: ";").compactMap { VMVolume(encoded: String($0)) }
        tenant = attributes["tenant"].flatMap { $0.isEmpty ? nil : $0 }
    }

    static func attachment(_ text: Substring) -> NetworkAttachment? {
        let fields = text.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
        guard fields.count == 5, let vni = Int(fields[1]) else { return nil }
        let address = fields[2].split(separator: "/")
        guard address.count == 2, let prefix = Int(address[1]) else { return nil }
        return NetworkAttachment(network: fields[0], vni: vni, bridge: "dz-br\(vni)", ip: String(address[0]), prefixLength: prefix,
                                 gateway: fields[3], mac: fields[4])
    }

    /// The element, values escaped (the IP comes from the network). `adapted` and `def` only when there is one.
    public func encode() -> String {
        let adaptedAttribute = adaptations.isEmpty ? "" : " adapted='\(xmlEscape(adaptations.joined(separator: "; ")))'"
        let definitionAttribute = definitionDigest.map { " def='\(xmlEscape($0))'" } ?? ""
        let loadAttributes = (syntheticLoad.vcpus.map { " load-vcpus='\($0)'" } ?? "")
            + (syntheticLoad.memoryMiB.map { " load-mem='\($0)'" } ?? "")
        let haAttribute = highlyAvailable ? " ha='1'" : ""
        let nets = networks.map { "\($0.network)|\($0.vni)|\($0.ip)/\($0.prefixLength)|\($0.gateway)|\($0.mac)" }.joined(separator: ";")
        let netsAttribute = networks.isEmpty ? "" : " nets='\(xmlEscape(nets))'"
        let volumesAttribute = volumes.isEmpty ? "" : " vols='\(xmlEscape(volumes.map(\.encoded).joined(separator: ";")))'"
        let tenantAttribute = tenant.map { " tenant='\(xmlEscape($0))'" } ?? ""
        return "<vm rx='\(rxBytes)' tx='\(txBytes)' ip='\(xmlEscape(ipAddress))'\(adaptedAttribute)\(definitionAttribute)\(loadAttributes)\(haAttribute)\(netsAttribute)\(volumesAttribute)\(tenantAttribute)/>"
    }

    /// The element as a domain is defined with it.
    public var domainMetadata: DomainMetadata {
        DomainMetadata(xml: encode(), key: Self.key, namespace: Self.namespace)
    }
}

/// The domain XML without the graphics consoles' `passwd` attributes: what clients may be shown (libvirt's
/// non-secure form omits it too, but a prepared definition still carries it).
public func domainXMLWithoutSecrets(_ xml: String) -> String {
    var result = xml
    for quote in ["'", "\""] {
        while let start = result.range(of: " passwd=\(quote)") {
            guard let end = result[start.upperBound...].firstIndex(of: Character(quote)) else { break }
            result.removeSubrange(start.lowerBound...end)
        }
    }
    return result
}
