import ClusterCore
import Foundation

/// A storage volume Doze creates for one VM in the host's VM-disk pool (`poolName`) and deletes with it: the
/// root overlay of an image-based VM (`<vm>-root.qcow2`, backing file = the image in the host's image pool) or
/// one data volume of its `disks` (`<vm>-data<N>.qcow2`). No IO: the controller creates and deletes them.
public struct VMVolume: Sendable, Equatable {
    /// The libvirt `dir` pool the volumes live in, at `STATE/vm-disks` (one per controller).
    public static let poolName = "doze-vm-disks"
    /// The largest data volume accepted, in GiB (qcow2 volumes are sparse; this only stops typos).
    public static let maxDataGiB = 65_536
    /// At most this many data volumes per VM (virtio targets vdb…).
    public static let maxDataVolumes = 8

    public var name: String
    /// Virtual size in bytes. nil for an overlay on a real host: qemu-img then takes the image's size.
    public var capacityBytes: UInt64?
    /// The image file name in the image pool (the overlay's backing file); nil for a data volume.
    public var backingImage: String?
    /// The backing file's format (qcow2 or raw), with `backingImage`.
    public var backingFormat: String?
    /// The guest's device name (vda for the root disk, vdb… for data volumes).
    public var target: String

    public init(name: String, capacityBytes: UInt64?, backingImage: String? = nil, backingFormat: String? = nil, target: String) {
        self.name = name
        self.capacityBytes = capacityBytes
        self.backingImage = backingImage
        self.backingFormat = backingFormat
        self.target = target
    }

    public var isOverlay: Bool { backingImage != nil }

    public static func rootName(vm: String) -> String { "\(vm)-root.qcow2" }
    public static func dataName(vm: String, index: Int) -> String { "\(vm)-data\(index).qcow2" }

    /// The volumes of an image-based VM: a root overlay unless the image is an ISO (booted read-only as a
    /// CD-ROM), then one data volume per entry of `dataDisksGiB`. `overlayCapacityBytes`: nil on real hosts;
    /// libvirt's test driver insists on a capacity and gets the image file's size.
    public static func plan(vm: String, imageFile: String, imageFormat: String, overlayCapacityBytes: UInt64?,
                            dataDisksGiB: [Int]) -> [VMVolume] {
        var volumes: [VMVolume] = []
        if imageFormat != "iso" {
            volumes.append(VMVolume(name: rootName(vm: vm), capacityBytes: overlayCapacityBytes, backingImage: imageFile,
                                    backingFormat: imageFormat, target: "vda"))
        }
        // Data volumes follow the root disk: vdb, vdc, … (or vda, vdb, … beside an ISO on its IDE CD-ROM).
        let first = volumes.count
        for (index, gib) in dataDisksGiB.enumerated() {
            let letter = Array("abcdefghijklmnop")[first + index]
            volumes.append(VMVolume(name: dataName(vm: vm, index: index), capacityBytes: UInt64(gib) << 30, target: "vd\(letter)"))
        }
        return volumes
    }

    /// Checks a submission's `disks` (GiB per data volume).
    public static func checkDataDisks(_ disks: [Int]) throws(DozeError) {
        guard disks.count <= maxDataVolumes else {
            throw DozeError(.badRequest, "disks: at most \(maxDataVolumes) data volumes per VM, got \(disks.count)")
        }
        for (index, gib) in disks.enumerated() where !(1...maxDataGiB).contains(gib) {
            throw DozeError(.badRequest, "disks[\(index)] is in GiB, from 1 to \(maxDataGiB), got \(gib)")
        }
    }

    // MARK: - XML

    /// The `virStorageVolCreateXML` document: a qcow2 volume, with the image as its backing store for an overlay.
    /// `backingPath`: where the backing image is on this host (required for an overlay).
    public func volumeXML(backingPath: String?) -> String {
        let capacity = capacityBytes.map { "<capacity unit='bytes'>\($0)</capacity>" } ?? ""
        var backing = ""
        if let backingPath {
            backing = "<backingStore><path>\(xmlEscape(backingPath))</path><format type='\(xmlEscape(backingFormat ?? "raw"))'/></backingStore>"
        }
        return "<volume><name>\(xmlEscape(name))</name>\(capacity)<target><format type='qcow2'/></target>\(backing)</volume>"
    }

    /// The domain's `<disk>` for this volume at `path`.
    public func diskXML(path: String) -> String {
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='\(xmlEscape(path))'/>"
            + "<target dev='\(target)' bus='virtio'/></disk>"
    }

    // MARK: - Metadata

    /// One entry of the domain metadata's `vols` attribute: `name,capacity,image,format` (empty fields allowed).
    /// Names are VM names plus a suffix and image ids are file names: neither holds ',' or ';' (checked on decode).
    public var encoded: String {
        [name, capacityBytes.map(String.init) ?? "", backingImage ?? "", backingFormat ?? "", target].joined(separator: ",")
    }

    /// Reads an `encoded` entry; nil for anything malformed (metadata outlives the code that wrote it).
    public init?(encoded: String) {
        let fields = encoded.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard fields.count == 5, !fields[0].isEmpty, !fields[0].contains("/"), !fields[4].isEmpty else { return nil }
        let capacity = fields[1].isEmpty ? nil : UInt64(fields[1])
        if !fields[1].isEmpty, capacity == nil { return nil }
        self.init(name: fields[0], capacityBytes: capacity, backingImage: fields[2].isEmpty ? nil : fields[2],
                  backingFormat: fields[3].isEmpty ? nil : fields[3], target: fields[4])
    }

    // MARK: - Migration

    /// The domain XML with every `file='…'` attribute (disk sources, backing stores) whose file name is a key of
    /// `paths` pointed at that path: a migration's destination XML, whose volumes and image sit elsewhere there.
    public static func retargeting(_ xml: String, paths: [String: String]) -> String {
        guard !paths.isEmpty else { return xml }
        var out = ""
        out.reserveCapacity(xml.utf8.count)
        var rest = Substring(xml)
        while let attribute = rest.firstRange(of: "file=") {
            out += rest[..<attribute.upperBound]
            rest = rest[attribute.upperBound...]
            guard let quote = rest.first, quote == "'" || quote == "\"",
                  let end = rest.dropFirst().firstIndex(of: quote) else { continue }
            let value = rest[rest.index(after: rest.startIndex)..<end]
            let path = unescape(String(value))
            let fileName = path.split(separator: "/").last.map(String.init) ?? path
            if let replacement = paths[fileName] {
                out += "\(quote)\(xmlEscape(replacement))\(quote)"
            } else {
                out += rest[...end]
            }
            rest = rest[rest.index(after: end)...]
        }
        out += rest
        return out
    }

    static func unescape(_ text: String) -> String {
        guard text.contains("&") else { return text }
        return text.replacingOccurrences(of: "&apos;", with: "'").replacingOccurrences(of: "&quot;", with: "\"")
            .replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&amp;", with: "&")
    }
}
