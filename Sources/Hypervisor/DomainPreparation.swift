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

        public init(name: String, template: String, imageId: String? = nil, vcpus: Double = 0, memoryKiB: Double = 0,
                    ipAddress: String = "", vncPassword: String? = nil) {
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
    }

    /// The domain XML for `submission`. `imagePool` is read only for an image-based VM.
    public func prepare(_ submission: Submission, imagePool: @autoclosure () -> ImagePoolListing) throws(DozeError) -> Prepared {
        guard submission.isImageBased else {
            let (xml, change) = TemplateAdaptation.adapt(submission.template, supported: supportedDomainTypes)
            return Prepared(xml: TemplateAdaptation.addingInterfaces(submission.networks, to: xml), adaptations: change.map { [$0.description] } ?? [])
        }
        guard let imageId = submission.imageId, !imageId.isEmpty else {
            throw DozeError(.badRequest, "VM '\(submission.name)' has neither a libvirt template nor an imageId")
        }
        let image = try imagePool().image(imageId)
        let mac = submission.ipAddress.isEmpty ? nil : IPPool.mac(for: submission.ipAddress)
        let xml = TemplateAdaptation.domainXML(
            name: submission.name, type: supportedDomainTypes[0],
            vcpus: max(1, Int(submission.vcpus)), memoryKiB: max(1024, Int(submission.memoryKiB)),
            imagePath: image.path, format: image.format, mac: mac, vncPassword: submission.vncPassword)
        return Prepared(xml: TemplateAdaptation.addingInterfaces(submission.networks, to: xml), adaptations: [])
    }
}

/// What a host's image pool directory holds, as read by the caller.
public struct ImagePoolListing: Sendable, Equatable {
    public var path: String
    /// Every entry's name (as a directory listing gives them).
    public var entries: [String]
    /// The entries that are files (symlinks followed), not directories: the ones a VM can boot from.
    public var files: Set<String>

    public init(path: String, entries: [String], files: Set<String>) {
        self.path = path
        self.entries = entries
        self.files = files
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
