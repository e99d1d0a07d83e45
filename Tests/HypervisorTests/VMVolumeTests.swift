import ClusterCore
import Hypervisor
import Testing

@Suite struct VMVolumeTests {
    static let kvmHost = DomainPreparation(supportedDomainTypes: ["kvm", "qemu"])
    static let images = ImagePoolListing(path: "/pool", entries: ["debian.qcow2", "alpine.iso", "plain"],
                                         files: ["debian.qcow2", "alpine.iso", "plain"], sizes: ["debian.qcow2": 5 << 20])
    static let realPool = DomainPreparation.VolumePool(path: "/state/vm-disks", requiresCapacity: false)
    static let testPool = DomainPreparation.VolumePool(path: "/state/vm-disks", requiresCapacity: true)

    @Test func anImageBasedVMBootsAnOverlayOfItsImageAndGetsItsDataVolumes() throws {
        let submission = DomainPreparation.Submission(name: "web", template: "", imageId: "debian", vcpus: 1, memoryKiB: 131072,
                                                      dataDisksGiB: [10, 1])
        let prepared = try Self.kvmHost.prepare(submission, imagePool: Self.images, volumePool: Self.realPool)
        #expect(prepared.volumes == [
            VMVolume(name: "web-root.qcow2", capacityBytes: nil, backingImage: "debian.qcow2", backingFormat: "qcow2", target: "vda"),
            VMVolume(name: "web-data0.qcow2", capacityBytes: 10 << 30, target: "vdb"),
            VMVolume(name: "web-data1.qcow2", capacityBytes: 1 << 30, target: "vdc"),
        ])
        let description = try DomainDescription(xml: prepared.xml)
        // The image itself is never a disk of the VM: only its overlay (and the data volumes) are.
        #expect(description.hostPaths.map(\.path) == ["/state/vm-disks/web-root.qcow2", "/state/vm-disks/web-data0.qcow2",
                                                      "/state/vm-disks/web-data1.qcow2"])
        #expect(prepared.xml.contains("<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/state/vm-disks/web-root.qcow2'/><target dev='vda' bus='virtio'/></disk>"))
        #expect(prepared.xml.contains("<boot dev='hd'/>"))
    }

    @Test func theOverlayVolumeXMLNamesTheImageAsItsBackingStore() {
        let overlay = VMVolume(name: "web-root.qcow2", capacityBytes: nil, backingImage: "plain", backingFormat: "raw", target: "vda")
        #expect(overlay.volumeXML(backingPath: "/pool/plain") == "<volume><name>web-root.qcow2</name><target><format type='qcow2'/></target>"
            + "<backingStore><path>/pool/plain</path><format type='raw'/></backingStore></volume>")
        let data = VMVolume(name: "web-data0.qcow2", capacityBytes: 1 << 30, target: "vdb")
        #expect(data.volumeXML(backingPath: nil)
            == "<volume><name>web-data0.qcow2</name><capacity unit='bytes'>1073741824</capacity><target><format type='qcow2'/></target></volume>")
    }

    @Test func aTestDriverHostGivesTheOverlayTheImageFileSize() throws {
        let submission = DomainPreparation.Submission(name: "t", template: "", imageId: "debian.qcow2")
        let prepared = try Self.kvmHost.prepare(submission, imagePool: Self.images, volumePool: Self.testPool)
        #expect(prepared.volumes.map(\.capacityBytes) == [5 << 20])
        // An image of unknown size still gets a capacity libvirt's test driver accepts.
        let plain = try Self.kvmHost.prepare(.init(name: "p", template: "", imageId: "plain"), imagePool: Self.images, volumePool: Self.testPool)
        #expect(plain.volumes.map(\.capacityBytes) == [1 << 20])
        #expect(plain.volumes.map(\.backingFormat) == ["raw"])
    }

    @Test func anISOIsBootedReadOnlyAndItsDataVolumesStartAtVDA() throws {
        let submission = DomainPreparation.Submission(name: "live", template: "", imageId: "alpine", dataDisksGiB: [2])
        let prepared = try Self.kvmHost.prepare(submission, imagePool: Self.images, volumePool: Self.realPool)
        #expect(prepared.volumes == [VMVolume(name: "live-data0.qcow2", capacityBytes: 2 << 30, target: "vda")])
        #expect(prepared.xml.contains("<source file='/pool/alpine.iso'/><target dev='hdc' bus='ide'/><readonly/>"))
        #expect(prepared.xml.contains("<boot dev='cdrom'/>"))
    }

    @Test func aMissingImageIsNotFoundAndPlansNoVolume() {
        let submission = DomainPreparation.Submission(name: "web", template: "", imageId: "ubuntu", dataDisksGiB: [1])
        #expect(throws: DozeError(.notFound, "image 'ubuntu' is not in this host's image pool /pool (it holds: alpine.iso, debian.qcow2, plain)")) {
            try Self.kvmHost.prepare(submission, imagePool: Self.images, volumePool: Self.realPool)
        }
    }

    @Test func dataDiskSizesAreChecked() {
        for (disks, message) in [([0], "disks[0] is in GiB, from 1 to 65536, got 0"), ([1, 70_000], "disks[1] is in GiB, from 1 to 65536, got 70000"),
                                 (Array(repeating: 1, count: 9), "disks: at most 8 data volumes per VM, got 9")] {
            #expect(throws: DozeError(.badRequest, message)) {
                try Self.kvmHost.prepare(.init(name: "w", template: "", imageId: "debian", dataDisksGiB: disks), imagePool: Self.images,
                                         volumePool: Self.realPool)
            }
        }
        // Without a volume pool there is nowhere to put them.
        #expect(throws: DozeError(.unsupported, "VM 'w' asks for data disks but this host has no volume pool")) {
            try Self.kvmHost.prepare(.init(name: "w", template: "", imageId: "debian", dataDisksGiB: [1]), imagePool: Self.images)
        }
    }

    @Test func volumesRoundTripThroughTheDomainMetadata() {
        var metadata = DozeDomainMetadata(ipAddress: "10.0.0.5")
        metadata.volumes = [VMVolume(name: "0.demo.a.b-root.qcow2", capacityBytes: nil, backingImage: "cirros.qcow2", backingFormat: "qcow2", target: "vda"),
                            VMVolume(name: "0.demo.a.b-data0.qcow2", capacityBytes: 10 << 30, target: "vdb")]
        let encoded = metadata.encode()
        #expect(encoded.contains(" vols='0.demo.a.b-root.qcow2,,cirros.qcow2,qcow2,vda;0.demo.a.b-data0.qcow2,10737418240,,,vdb'"))
        #expect(DozeDomainMetadata(decoding: encoded) == metadata)
        // Nothing is written without volumes; malformed entries are skipped.
        #expect(!DozeDomainMetadata().encode().contains("vols"))
        #expect(DozeDomainMetadata(decoding: "<vm vols='a,x,,,vda;,1,,,vdb;b/c,1,,,vdc;ok,1,,,vdd'/>").volumes.map(\.name) == ["ok"])
    }

    @Test func aMigrationsDestinationXMLPointsTheDisksAtTheDestinationsPaths() {
        let xml = "<domain><devices><disk type='file'><source file='/a/vm-disks/web-root.qcow2' index='2'/>"
            + "<backingStore type='file'><source file=\"/a/images/debian.qcow2\"/></backingStore></disk>"
            + "<disk><source file='/a/vm-disks/web-data0.qcow2'/></disk><serial><source path='/x/console.log'/></serial>"
            + "<disk><source file='/elsewhere/kept.img'/></disk></devices></domain>"
        let retargeted = VMVolume.retargeting(xml, paths: ["web-root.qcow2": "/b/vm-disks/web-root.qcow2", "debian.qcow2": "/b/images/debian.qcow2",
                                                           "web-data0.qcow2": "/b/vm-disks/web-data0.qcow2"])
        #expect(retargeted == "<domain><devices><disk type='file'><source file='/b/vm-disks/web-root.qcow2' index='2'/>"
            + "<backingStore type='file'><source file=\"/b/images/debian.qcow2\"/></backingStore></disk>"
            + "<disk><source file='/b/vm-disks/web-data0.qcow2'/></disk><serial><source path='/x/console.log'/></serial>"
            + "<disk><source file='/elsewhere/kept.img'/></disk></devices></domain>")
        #expect(VMVolume.retargeting(xml, paths: [:]) == xml)
    }
}
