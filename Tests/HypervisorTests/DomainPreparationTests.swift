import ClusterCore
import Hypervisor
import Testing

@Suite struct DomainPreparationTests {
    static let kvmHost = DomainPreparation(supportedDomainTypes: ["kvm", "qemu"])
    static let pool = ImagePoolListing(path: "/pool", entries: ["debian.qcow2", "alpine.iso", "plain", "disk.IMG", "dir.qcow2", ".hidden"],
                                       files: ["debian.qcow2", "alpine.iso", "plain", "disk.IMG", ".hidden"])
    static let template = "<domain type='kvm'><name>vm1</name><memory>1024</memory></domain>"

    @Test func aTemplateOfASupportedTypePassesUnchanged() throws {
        let prepared = try Self.kvmHost.prepare(.init(name: "vm1", template: Self.template), imagePool: Self.unread())
        #expect(prepared.xml == Self.template)
        #expect(prepared.adaptations.isEmpty)
    }

    @Test func aTemplateOfAnotherTypeIsAdaptedAndTheChangeRecorded() throws {
        let testHost = DomainPreparation(supportedDomainTypes: ["test"])
        let prepared = try testHost.prepare(.init(name: "vm1", template: Self.template), imagePool: Self.unread())
        #expect(prepared.xml == "<domain type='test'><name>vm1</name><memory>1024</memory></domain>")
        #expect(prepared.adaptations == ["domain type 'kvm' adapted to 'test' for this host"])
    }

    @Test func anImageBasedVMGetsADomainAroundItsImage() throws {
        let submission = DomainPreparation.Submission(name: "web", template: "  \n", imageId: "debian", vcpus: 2, memoryKiB: 524288,
                                                      ipAddress: "10.0.0.5", vncPassword: "secret")
        let prepared = try Self.kvmHost.prepare(submission, imagePool: Self.pool)
        #expect(prepared.adaptations.isEmpty)
        #expect(prepared.xml == TemplateAdaptation.domainXML(name: "web", type: "kvm", vcpus: 2, memoryKiB: 524288,
                                                             imagePath: "/pool/debian.qcow2", format: "qcow2",
                                                             mac: "54:56:0a:00:00:05", vncPassword: "secret"))
        let description = try DomainDescription(xml: prepared.xml)
        #expect(description.type == "kvm" && description.vcpus == 2 && description.memoryKiB == 524288)
        #expect(description.macAddresses == ["54:56:0a:00:00:05"])
    }

    @Test func anImageBasedVMGetsAtLeastOneVCPUAndOneMiBAndNoNICWithoutAnAddress() throws {
        let submission = DomainPreparation.Submission(name: "tiny", template: "", imageId: "plain")
        let description = try DomainDescription(xml: try Self.kvmHost.prepare(submission, imagePool: Self.pool).xml)
        #expect(description.vcpus == 1)
        #expect(description.memoryKiB == 1024)
        #expect(description.macAddresses.isEmpty)
        #expect(description.hostPaths.map(\.path) == ["/pool/plain"])
    }

    @Test func neitherTemplateNorImageIsABadRequest() {
        #expect(throws: DozeError(.badRequest, "VM 'x' has neither a libvirt template nor an imageId")) {
            try Self.kvmHost.prepare(.init(name: "x", template: "", imageId: ""), imagePool: Self.pool)
        }
    }

    @Test func findsImagesWithOrWithoutTheirExtensionAndTellsTheFormat() throws {
        func found(_ imageId: String) throws -> String {
            let image = try Self.pool.image(imageId)
            return "\(image.path) \(image.format)"
        }
        #expect(try found("debian") == "/pool/debian.qcow2 qcow2")
        #expect(try found("debian.qcow2") == "/pool/debian.qcow2 qcow2")
        #expect(try found("alpine") == "/pool/alpine.iso iso")
        #expect(try found("plain") == "/pool/plain raw")
        #expect(try found("disk.IMG") == "/pool/disk.IMG raw")
    }

    @Test func aDirectoryIsNoImage() {
        #expect(throws: DozeError.self) { try Self.pool.image("dir") }
    }

    @Test func imageIdsMustBePlainFileNames() {
        for imageId in ["../etc/passwd", "a/b", ".hidden", String(repeating: "x", count: 256)] {
            #expect(throws: DozeError(.badRequest, "imageId '\(imageId)' must be a file name in the image pool, without '/'")) {
                try Self.pool.image(imageId)
            }
        }
    }

    @Test func aMissingImageNamesWhatThePoolHolds() {
        #expect(throws: DozeError(.notFound, "image 'nope' is not in this host's image pool /pool (it holds: alpine.iso, debian.qcow2, dir.qcow2, disk.IMG, plain)")) {
            try Self.pool.image("nope")
        }
        let empty = ImagePoolListing(path: "/empty", entries: [".keep"], files: [".keep"])
        #expect(throws: DozeError(.notFound, "image 'nope' is not in this host's image pool /empty (the pool is empty)")) {
            try empty.image("nope")
        }
    }

    /// The listing of a template-based VM is never needed: reading it would be wasted IO.
    static func unread() -> ImagePoolListing {
        Issue.record("the image pool was read for a template-based VM")
        return ImagePoolListing(path: "/unused", entries: [], files: [])
    }
}
