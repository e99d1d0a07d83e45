import ClusterCore
import Foundation

/// Turns a VM submitted to a host into the domain XML that host runs: the submitted template with its domain
/// type adapted to what the host supports, or, for an image-based VM (no XML, an image id), a domain built
/// around that image of the host's image pool. No IO: the caller reads the image pool.
public struct DomainPreparation: Sendable, Equatable {
    /// Domain types the host runs, best first (e.g. `["kvm", "qemu"]`, or `["test"]`); never empty.
    public var supportedDomainTypes: [String]

    public init(supportedDomainTypes: [String]) {
        precondition(!supportedDomainTypes.isEmpty, "a host runs at least one domain type")
        self.supportedDomainTypes = supportedDomainTypes
    }

    /// What a submission says about the domain to run.
    public struct Submission: Sendable, Equatable {
        public var name: String
        /// The libvirt template; blank for an image-based VM.
        public var template: String
        public var imageId: String?
        /// Requested capacity, used only to build an image-based domain.
        public var vcpus: Double
        public var memoryKiB: Double
        /// The VM's address: an image-based domain gets a NIC whose MAC is derived from it.
        public var ipAddress: String
        public var vncPassword: String?
        /// NICs on seed-004 switches: each becomes a virtio `<interface type='bridge'>` on the switch's bridge.
        public var networks: [NetworkAttachment] = []
        /// Image-based VMs only: one data volume of each size, in GiB.
        public var dataDisksGiB: [Int]

        public init(name: String, template: String, imageId: String? = nil, vcpus: Double = 0, memoryKiB: Double = 0,
                    ipAddress: String = "", vncPassword: String? = nil, dataDisksGiB: [Int] = []) {
            self.dataDisksGiB = dataDisksGiB
            self.name = name
            self.template = template
            self.imageId = imageId
            self.vcpus = vcpus
            self.memoryKiB = memoryKiB
            self.ipAddress = ipAddress
            self.vncPassword = vncPassword
        }

        public var isImageBased: Bool { template.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty }
    }

    public struct Prepared: Sendable, Equatable {
        public var xml: String
        /// What was changed in the template to run it here, recorded in the VM's metadata.
        public var adaptations: [String]
        /// The volumes the caller creates before defining the domain (and deletes with it): the image's overlay
        /// and the data volumes, in the VM-disk pool. Empty for a template, or without a volume pool.
        public var volumes: [VMVolume] = []
    }

    /// Where an image-based VM's volumes go: the directory of the host's VM-disk pool (`VMVolume.poolName`).
    public struct VolumePool: Sendable, Equatable {
        public var path: String
        /// libvirt's test driver refuses a volume without a capacity: overlays get the image file's size there.
        public var requiresCapacity: Bool
        public init(path: String, requiresCapacity: Bool) {
            self.path = path
            self.requiresCapacity = requiresCapacity
        }
    }

    /// The domain XML for `submission`. `imagePool` is read only for an image-based VM. With a `volumePool`, an
    /// image-based VM boots a per-VM qcow2 overlay of its image (and gets its data volumes) instead of the image
    /// itself; without one (a caller with no storage pool) it boots the image file and cannot have data volumes.
    public func prepare(_ submission: Submission, imagePool: @autoclosure () -> ImagePoolListing,
                        volumePool: VolumePool? = nil) throws(DozeError) -> Prepared {
        guard submission.isImageBased else {
            let (xml, change) = TemplateAdaptation.adapt(submission.template, supported: supportedDomainTypes)
            return Prepared(xml: TemplateAdaptation.addingInterfaces(submission.networks, to: xml), adaptations: change.map { [$0.description] } ?? [])
        }
        guard let imageId = submission.imageId, !imageId.isEmpty else {
            throw DozeError(.badRequest, "VM '\(submission.name)' has neither a libvirt template nor an imageId")
        }
        try VMVolume.checkDataDisks(submission.dataDisksGiB)
        let pool = imagePool()
        let image = try pool.image(imageId)
        let mac = submission.ipAddress.isEmpty ? nil : IPPool.mac(for: submission.ipAddress)
        let vcpus = max(1, Int(submission.vcpus)), memoryKiB = max(1024, Int(submission.memoryKiB))
        guard let volumePool else {
            guard submission.dataDisksGiB.isEmpty else {
                throw DozeError(.unsupported, "VM '\(submission.name)' asks for data disks but this host has no volume pool")
            }
            let xml = TemplateAdaptation.domainXML(name: submission.name, type: supportedDomainTypes[0], vcpus: vcpus, memoryKiB: memoryKiB,
                                                   imagePath: image.path, format: image.format, mac: mac, vncPassword: submission.vncPassword)
            return Prepared(xml: TemplateAdaptation.addingInterfaces(submission.networks, to: xml), adaptations: [])
        }
        let imageFile = String(image.path.dropFirst(pool.path.count + 1))
        let overlayCapacity: UInt64? = volumePool.requiresCapacity ? max(pool.sizes[imageFile] ?? 0, 1 << 20) : nil
        let volumes = VMVolume.plan(vm: submission.name, imageFile: imageFile, imageFormat: image.format,
                                    overlayCapacityBytes: overlayCapacity, dataDisksGiB: submission.dataDisksGiB)
        let disks = volumes.map { $0.diskXML(path: volumePool.path + "/" + $0.name) }
        let xml: String
        if image.format == "iso" {
            xml = TemplateAdaptation.domainXML(name: submission.name, type: supportedDomainTypes[0], vcpus: vcpus, memoryKiB: memoryKiB,
                                               imagePath: image.path, format: image.format, mac: mac, vncPassword: submission.vncPassword,
                                               extraDisks: disks)
        } else {
            // The overlay is the root disk: the image itself is only ever read, as its backing file.
            xml = TemplateAdaptation.domainXML(name: submission.name, type: supportedDomainTypes[0], vcpus: vcpus, memoryKiB: memoryKiB,
                                               rootDisk: disks[0], bootDevice: "hd", mac: mac, vncPassword: submission.vncPassword,
                                               extraDisks: Array(disks.dropFirst()))
        }
        return Prepared(xml: TemplateAdaptation.addingInterfaces(submission.networks, to: xml), adaptations: [], volumes: volumes)
    }
}

/// What a host's image pool directory holds, as read by the caller.
public struct ImagePoolListing: Sendable, Equatable {
    public var path: String
    /// Every entry's name (as a directory listing gives them).
    public var entries: [String]
    /// The entries that are files (symlinks followed), not directories: the ones a VM can boot from.
    public var files: Set<String>
    /// File sizes in bytes, where the caller read them (a test-driver overlay's capacity).
    public var sizes: [String: UInt64]

    public init(path: String, entries: [String], files: Set<String>, sizes: [String: UInt64] = [:]) {
        self.path = path
        self.entries = entries
        self.files = files
        self.sizes = sizes
    }

    /// Extensions tried after the bare name, in this order.
    static let extensions = [".qcow2", ".img", ".raw", ".iso"]

    /// An image by file name, with or without its extension, and its disk format (qcow2, iso or raw).
    public func image(_ imageId: String) throws(DozeError) -> (path: String, format: String) {
        guard !imageId.contains("/"), !imageId.hasPrefix("."), imageId.utf8.count <= 255 else {
            throw DozeError(.badRequest, "imageId '\(imageId)' must be a file name in the image pool, without '/'")
        }
        for candidate in [imageId] + Self.extensions.map({ imageId + $0 }) where files.contains(candidate) {
            return (path + "/" + candidate, Self.format(ofFileNamed: candidate))
        }
        let available = entries.filter { !$0.hasPrefix(".") }.sorted()
        throw DozeError(.notFound, "image '\(imageId)' is not in this host's image pool \(path)"
            + (available.isEmpty ? " (the pool is empty)" : " (it holds: \(available.prefix(10).joined(separator: ", ")))"))
    }

    /// The format libvirt is told, from the extension (case-insensitive); anything else is raw.
    static func format(ofFileNamed name: String) -> String {
        let lowercased = name.lowercased()
        if lowercased.hasSuffix(".qcow2") { return "qcow2" }
        if lowercased.hasSuffix(".iso") { return "iso" }
        return "raw"
    }
}
