import ClusterAPI
import ClusterCore
import Foundation
import Hypervisor
import Logging

/// The volumes Doze makes for image-based VMs: a per-VM qcow2 overlay of the image and the data volumes, in one
/// libvirt `dir` pool per controller (`VMVolume.poolName` at `STATE/vm-disks`). What to create is decided by
/// `DomainPreparation`/`VMVolume`; the list travels in the domain's Doze metadata, so a destroy (even after a
/// controller restart or a migration) deletes exactly what was made for the VM.
extension LocalController {
    /// Absolute, whatever `--state-dir` was: libvirt pools, disk sources and backing files need absolute paths.
    var volumePoolPath: String { Self.absolute(settings.stateDirectory) + "/vm-disks" }

    static func absolute(_ path: String) -> String { URL(fileURLWithPath: path).standardizedFileURL.path }

    /// What image-based VMs are prepared with (a test-driver host keeps its volumes as books only).
    var volumePool: DomainPreparation.VolumePool {
        DomainPreparation.VolumePool(path: volumePoolPath, requiresCapacity: HypervisorURI.isTestDriver(hypervisor.uri))
    }

    /// Creates the VM-disk pool unless libvirt has it (a fresh host, a restarted test-driver host).
    func ensureVolumePool() async {
        if (try? await hypervisor.storagePool(name: VMVolume.poolName)) != nil { return }
        do {
            try FileManager.default.createDirectory(atPath: volumePoolPath, withIntermediateDirectories: true)
            _ = try await hypervisor.createDirectoryPool(name: VMVolume.poolName, uuid: nil, path: volumePoolPath)
        } catch {
            log.warning("cannot create the VM-disk pool; image-based VMs will fail to start",
                        metadata: ["doze/path": "\(volumePoolPath)", "error": "\(error)"])
        }
    }

    /// Creates `volumes` for `vm` in order; on a failure, those already made are deleted again.
    func createVolumes(_ volumes: [VMVolume], for vm: String) async throws(DozeError) {
        guard !volumes.isEmpty else { return }
        await ensureVolumePool()
        let images = Self.listImagePool(config.imagePool.path)
        var made: [VMVolume] = []
        for volume in volumes {
            var backingPath: String?
            if let image = volume.backingImage {
                guard images.files.contains(image) else {
                    await deleteVolumes(made, of: vm)
                    throw DozeError(.notFound, "image '\(image)' is not in this host's image pool \(images.path)")
                }
                backingPath = Self.absolute(images.path) + "/" + image
            }
            let created: StorageVolumeInfo
            do {
                created = try await hypervisor.createVolume(pool: VMVolume.poolName, xml: volume.volumeXML(backingPath: backingPath))
            } catch {
                await deleteVolumes(made, of: vm)
                // A volume of that name is not this VM's: the name is taken (a leftover), never overwritten.
                let mapped = Self.map(error, doing: "create volume '\(volume.name)' for '\(vm)'")
                throw DozeError(mapped.kind, mapped.message.hasPrefix("create volume") ? mapped.message
                    : "create volume '\(volume.name)' for '\(vm)': \(mapped.message)")
            }
            made.append(volume)
            // The domain names the volume by this path: a pool of that name defined elsewhere (another controller
            // on the same daemon) must not get the VM's disks.
            let expected = volumePoolPath + "/" + volume.name
            if !created.path.isEmpty, created.path != expected {
                await deleteVolumes(made, of: vm)
                throw DozeError(.hypervisor, "libvirt's pool '\(VMVolume.poolName)' put volume '\(volume.name)' at \(created.path), not \(expected): "
                    + "it belongs to another state directory (one pool per daemon and controller)")
            }
        }
        log.info("created volumes", metadata: ["doze/vm": "\(vm)", "doze/volumes": "\(volumes.map(\.name))"])
    }

    /// Deletes the VM's volumes; one libvirt no longer has (a restarted test-driver host) is already gone. Only
    /// names made for this VM (`<vm>-…`) are touched, whatever the metadata says.
    func deleteVolumes(_ volumes: [VMVolume], of vm: String) async {
        for volume in volumes where volume.name.hasPrefix(vm + "-") {
            do { try await hypervisor.deleteVolume(pool: VMVolume.poolName, name: volume.name) } catch {
                guard error.code != .notFound else { continue }
                log.warning("cannot delete a volume of the VM", metadata: ["doze/vm": "\(vm)", "doze/volume": "\(volume.name)",
                                                                          "error": "\(error.message)"])
            }
        }
    }

    /// The VM-disk pool's volumes by name (tests, the destination of a migration).
    func volumeNames() async -> [String] {
        ((try? await hypervisor.listVolumes(pool: VMVolume.poolName)) ?? []).map(\.name)
    }
}
