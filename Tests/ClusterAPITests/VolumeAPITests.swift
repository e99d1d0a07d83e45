import ClusterAPI
import ClusterCore
import ClusterNode
import ClusterTestKit
import ClusterWire
import Foundation
import Hypervisor
import Testing

/// Image-based VMs' volumes on a test-driver host: the overlay and data volumes are libvirt volumes there (books
/// only, no files), made before the domain and deleted with it, or on any failure.
@Suite struct VolumeAPITests {
    static func imageVM(_ name: String, image: String, disks: [Int]? = nil) -> VirtualMachineMetaData {
        var meta = VirtualMachineMetaData(location: VirtualMachineLocation(virtualMachineId: name),
                                          requestedCapacity: ResourceVector(vcpus: 1, memoryKiB: 131072), imageId: image)
        meta.disks = disks
        return meta
    }

    static func volumes(_ controller: LocalController) async throws -> [String] {
        try await controller.hypervisor.listVolumes(pool: VMVolume.poolName).map(\.name)
    }

    static func withImage(_ body: (APIFixture) async throws -> Void) async throws {
        let fixture = try await APIFixture.make()
        defer { fixture.dir.remove() }
        try Data(repeating: 7, count: 4096).write(to: URL(fileURLWithPath: fixture.dir.file("state/images/cirros.qcow2")))
        try await body(fixture)
    }

    @Test func anImageBasedVMRunsOnAnOverlayWithItsDataVolumeAndBothGoWithIt() async throws {
        try await Self.withImage { fixture in
            let controller = fixture.controller
            let answer = try await controller.startVirtualMachines(
                VirtualMachineSubmission(virtualMachineMetaData: [Self.imageVM("web", image: "cirros", disks: [2])]), partial: true)
            let meta = try #require(answer.virtualMachineMetaData.first)
            #expect(meta.status == .running, "\(meta.errorMessage ?? "")")
            #expect(meta.disks == [2])
            #expect(try await Self.volumes(controller) == ["web-data0.qcow2", "web-root.qcow2"])
            let pool = fixture.dir.file("state/vm-disks")
            let description = try DomainDescription(xml: meta.xmlRepresentation)
            #expect(description.hostPaths.map(\.path) == ["\(pool)/web-root.qcow2", "\(pool)/web-data0.qcow2"])
            let overlay = try await controller.hypervisor.listVolumes(pool: VMVolume.poolName).first { $0.name == "web-root.qcow2" }
            #expect(overlay?.capacityBytes == 1 << 20)   // the test driver's stand-in capacity: the image is 4 KiB
            #expect(try await controller.hypervisor.listVolumes(pool: VMVolume.poolName).first { $0.name == "web-data0.qcow2" }?.capacityBytes == 2 << 30)

            try await controller.destroy(vm: "web")
            #expect(try await Self.volumes(controller).isEmpty)
        }
    }

    @Test func aMissingImageFailsTheVMWithImageNotFoundAndLeavesNoVolume() async throws {
        try await Self.withImage { fixture in
            let controller = fixture.controller
            let answer = try await controller.startVirtualMachines(
                VirtualMachineSubmission(virtualMachineMetaData: [Self.imageVM("lost", image: "ubuntu", disks: [1])]), partial: true)
            let meta = try #require(answer.virtualMachineMetaData.first)
            #expect(meta.status == .error)
            #expect(meta.errorCode == .imageNotFound)
            #expect(meta.errorMessage?.contains("image 'ubuntu' is not in this host's image pool") == true)
            #expect(try await Self.volumes(controller).isEmpty)
            #expect(try await controller.virtualMachines().isEmpty)
        }
    }

    @Test func aVolumeThatCannotBeMadeUndoesTheOthersAndLeavesForeignOnesAlone() async throws {
        try await Self.withImage { fixture in
            let controller = fixture.controller
            // Someone else's volume holds the name the VM's data volume needs.
            _ = try await controller.hypervisor.createVolume(pool: VMVolume.poolName, name: "db-data0.qcow2", capacityBytes: 1 << 20, format: "qcow2")
            let answer = try await controller.startVirtualMachines(
                VirtualMachineSubmission(virtualMachineMetaData: [Self.imageVM("db", image: "cirros", disks: [1])]), partial: true)
            let meta = try #require(answer.virtualMachineMetaData.first)
            #expect(meta.status == .error)
            #expect(meta.errorMessage?.contains("create volume 'db-data0.qcow2' for 'db'") == true, "\(meta.errorMessage ?? "")")
            #expect(try await Self.volumes(controller) == ["db-data0.qcow2"])
            #expect(try await controller.virtualMachines().isEmpty)
        }
    }

    @Test func theVMsVolumesAreKnownAgainAfterARestartAndStillDeletedWithIt() async throws {
        try await Self.withImage { fixture in
            let answer = try await fixture.controller.startVirtualMachines(
                VirtualMachineSubmission(virtualMachineMetaData: [Self.imageVM("keep", image: "cirros.qcow2")]), partial: true)
            #expect(answer.virtualMachineMetaData.first?.status == .running)
            // The list is in the domain's Doze metadata, which libvirt keeps with the domain.
            let element = try #require(try await fixture.controller.hypervisor.metadata(.name("keep"), namespace: DozeDomainMetadata.namespace))
            #expect(DozeDomainMetadata(decoding: element).volumes.map(\.name) == ["keep-root.qcow2"])
            #expect(DozeDomainMetadata(decoding: element).volumes.first?.backingImage == "cirros.qcow2")
            try await fixture.controller.destroy(vm: "keep")
            #expect(try await Self.volumes(fixture.controller).isEmpty)
        }
    }

    @Test func aMigrationsDestinationMakesTheVolumesFirstAndACancelRemovesThem() async throws {
        try await Self.withImage { fixture in
            let controller = fixture.controller
            let volumes = [VMVolume(name: "web-root.qcow2", capacityBytes: 1 << 20, backingImage: "cirros.qcow2", backingFormat: "qcow2", target: "vda"),
                           VMVolume(name: "web-data0.qcow2", capacityBytes: 1 << 30, target: "vdb")]
            let hold = IncomingMigration(id: "m1", vm: "web", vcpus: 1, memoryMiB: 128, volumes: volumes.map(\.encoded))
            let answer = try await controller.prepareIncomingMigration(hold)
            let state = fixture.dir.file("state")
            #expect(answer.volumePaths == ["web-root.qcow2": "\(state)/vm-disks/web-root.qcow2", "web-data0.qcow2": "\(state)/vm-disks/web-data0.qcow2",
                                           "cirros.qcow2": "\(state)/images/cirros.qcow2"])
            #expect(try await Self.volumes(controller) == ["web-data0.qcow2", "web-root.qcow2"])
            // Asked again (a retry): the same answer, nothing made twice.
            #expect(try await controller.prepareIncomingMigration(hold).volumePaths == answer.volumePaths)
            try await controller.cancelIncomingMigration(hold)
            #expect(try await Self.volumes(controller).isEmpty)
            #expect(try await controller.usages().usages.cpuUsed == 0)
        }
    }

    @Test func aDestinationWithoutTheImageRefusesTheMoveAndKeepsNothing() async throws {
        try await Self.withImage { fixture in
            let controller = fixture.controller
            let volumes = [VMVolume(name: "web-root.qcow2", capacityBytes: 1 << 20, backingImage: "debian.qcow2", backingFormat: "qcow2", target: "vda")]
            let hold = IncomingMigration(id: "m2", vm: "web", vcpus: 1, memoryMiB: 128, volumes: volumes.map(\.encoded))
            let refusal = await #expect(throws: DozeError.self) { try await controller.prepareIncomingMigration(hold) }
            #expect(refusal?.kind == .notFound)
            #expect(refusal?.message.contains("cannot take the disks of 'web': image 'debian.qcow2' is not in this host's image pool") == true)
            #expect(try await Self.volumes(controller).isEmpty)
            #expect(try await controller.usages().usages.cpuUsed == 0)
            // The room was not kept either: the same VM can be prepared again once the image is there.
            try Data(repeating: 1, count: 512).write(to: URL(fileURLWithPath: fixture.dir.file("state/images/debian.qcow2")))
            #expect(try await controller.prepareIncomingMigration(hold).volumePaths?["debian.qcow2"] != nil)
        }
    }
}
