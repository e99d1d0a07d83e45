import ClusterAPI
import ClusterCore
import ClusterWire
import Foundation
import Hypervisor
import Logging

/// Room held on a destination for a VM on its way in.
struct IncomingHold: Sendable {
    var id: String
    var demand: HostUsage
    var since: ContinuousClock.Instant
    /// Volumes created here for the VM before the move, and where they and their backing images are.
    var volumes: [VMVolume] = []
    var volumePaths: [String: String]?
}

/// Moving VMs between hosts. The source's side runs in `MigrationRunner`; this host's books, and with them the
/// destination's side, stay here: the destination holds room for the VM first (within the quota, as any
/// reservation), so a move to a host without capacity is refused before anything happens.
extension LocalController {
    static let incomingHoldLimit: Duration = .seconds(1800)

    var driverName: String {
        String(settings.hypervisorURI.prefix { $0 != ":" && $0 != "+" })
    }

    /// Control operations wait for the move to end (or its abort): libvirt would refuse them half-way anyway.
    func refuseWhileMigrating(_ vm: String) async throws(DozeError) {
        try await migrations.refuseIfMigrating(vm)
        if incomingMigrations[vm] != nil {
            throw DozeError(.conflict, "VM '\(vm)' is migrating to this host; wait for it to arrive")
        }
    }

    // MARK: - Source

    /// Starts a migration and returns at once; `migrationStatus(id:wait:)` follows it.
    public func startMigration(_ command: LocalMigrationCommand) async throws(DozeError) -> LocalMigrationStatus {
        try await migrations.start(command, from: self)
    }

    /// The migration's state; with `wait`, returns as soon as it is final or after `wait`.
    public func migrationStatus(id: String, wait: Duration?) async throws(DozeError) -> LocalMigrationStatus {
        try await migrations.status(id: id, wait: wait)
    }

    /// Aborts a running migration; the VM keeps running here.
    public func abortMigration(id: String) async throws(DozeError) -> LocalMigrationStatus {
        try await migrations.abort(id: id)
    }

    // MARK: - Destination

    /// Holds room for an incoming VM (refused when it does not fit the quota) and says how to reach this host.
    public func prepareIncomingMigration(_ request: IncomingMigration) async throws(DozeError) -> IncomingMigrationAnswer {
        try Validation.vmName(request.vm)
        let now = ContinuousClock.now
        for (vm, hold) in incomingMigrations where now - hold.since > Self.incomingHoldLimit {
            incomingMigrations[vm] = nil
            reservations[vm] = nil
            if vms[vm] == nil { await deleteVolumes(hold.volumes, of: vm) }
        }
        if let hold = incomingMigrations[request.vm] {
            guard hold.id == request.id else {
                throw DozeError(.conflict, "VM '\(request.vm)' is already on its way here (migration \(hold.id))")
            }
            return IncomingMigrationAnswer(migrationURI: settings.migrationURI, driver: driverName, volumePaths: hold.volumePaths)
        }
        guard vms[request.vm] == nil, reservations[request.vm] == nil else {
            throw DozeError(.conflict, "local controller \(id) already has a VM named '\(request.vm)'")
        }
        let demand = HostUsage(vcpus: request.vcpus, memoryMiB: request.memoryMiB)
        do { try effectiveQuota.admit(demand, onTopOf: usage) } catch {
            throw DozeError(.quotaExceeded, "local controller \(id) has no room for '\(request.vm)': \(error.message)")
        }
        try await prepareNetworks(request.networks ?? [], vm: request.vm)
        reservations[request.vm] = demand
        incomingMigrations[request.vm] = IncomingHold(id: request.id, demand: demand, since: now)
        // The disks libvirt copies need files to go into: the same volumes, backed by this host's copy of the image.
        let volumes = (request.volumes ?? []).compactMap(VMVolume.init(encoded:))
        guard !volumes.isEmpty else {
            return IncomingMigrationAnswer(migrationURI: settings.migrationURI, driver: driverName)
        }
        do {
            try await createVolumes(volumes, for: request.vm)
        } catch {
            incomingMigrations[request.vm] = nil
            reservations[request.vm] = nil
            throw DozeError(error.kind, "local controller \(id) cannot take the disks of '\(request.vm)': \(error.message)")
        }
        var paths: [String: String] = [:]
        for volume in volumes {
            paths[volume.name] = volumePoolPath + "/" + volume.name
            if let image = volume.backingImage { paths[image] = Self.absolute(config.imagePool.path) + "/" + image }
        }
        incomingMigrations[request.vm]?.volumes = volumes
        incomingMigrations[request.vm]?.volumePaths = paths
        return IncomingMigrationAnswer(migrationURI: settings.migrationURI, driver: driverName, volumePaths: paths)
    }

    public func cancelIncomingMigration(_ request: IncomingMigration) async throws(DozeError) {
        guard let hold = incomingMigrations[request.vm], hold.id == request.id else { return }
        incomingMigrations[request.vm] = nil
        reservations[request.vm] = nil
        // libvirt has removed the half-arrived domain by now; drop it from the books without waiting for its event.
        _ = try? await refresh(request.vm)
        if vms[request.vm] == nil { await deleteVolumes(hold.volumes, of: request.vm) }
    }

    /// The VM has arrived (live): take it into the books with its metadata and report libvirt's final figures.
    public func finishIncomingMigration(_ request: IncomingMigration) async throws(DozeError) -> LocalMigrationStatus {
        if let hold = incomingMigrations[request.vm], hold.id == request.id {
            incomingMigrations[request.vm] = nil
            reservations[request.vm] = nil
        }
        try await adoptArrived(request.vm)
        let completed = try? await hypervisor.jobStats(.name(request.vm), completed: true)
        return LocalMigrationStatus(id: request.id, vm: request.vm, mode: "live", state: .completed,
                                    progress: completed.map(MigrationProgress.init))
    }

    /// Offline arrival: restore the saved image, make the domain persistent again, adopt it.
    public func restoreMigratedVirtualMachine(_ transfer: OfflineMigrationImage) async throws(DozeError) -> LocalMigrationStatus {
        guard let hold = incomingMigrations[transfer.vm], hold.id == transfer.id else {
            throw DozeError(.conflict, "no room was prepared here for '\(transfer.vm)' (migration \(transfer.id))")
        }
        let directory = settings.stateDirectory + "/migrations"
        let path = "\(directory)/\(transfer.id).in"
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try transfer.image.write(to: URL(fileURLWithPath: path))
        } catch {
            throw DozeError(.hypervisor, "cannot write the incoming image: \(error)")
        }
        do {
            let info = try await hypervisor.restore(from: path)
            let xml = try await hypervisor.xml(.uuid(info.uuid), secure: true)
            _ = try await hypervisor.define(xml: xml)   // restored domains are transient; the VM was persistent
        } catch {
            if (try? await hypervisor.domain(.name(transfer.vm))) != nil { _ = try? await remove(transfer.vm) }
            incomingMigrations[transfer.vm] = nil
            reservations[transfer.vm] = nil
            await deleteVolumes(hold.volumes, of: transfer.vm)
            throw Self.map(error, doing: "restore '\(transfer.vm)' here")
        }
        incomingMigrations[transfer.vm] = nil
        reservations[transfer.vm] = nil
        try await adoptArrived(transfer.vm)
        if let xml = try? await hypervisor.xml(.name(transfer.vm), secure: false), let info = vms[transfer.vm]?.info {
            try? journal?.record(info, xml: xml)
        }
        return LocalMigrationStatus(id: transfer.id, vm: transfer.vm, mode: "offline", state: .completed)
    }

    /// Books a VM that arrived with its Doze metadata (address, bandwidth, adaptations) in its XML.
    private func adoptArrived(_ vm: String) async throws(DozeError) {
        guard let record = try await refresh(vm, xmlChanged: true) else {
            throw DozeError(.notFound, "VM '\(vm)' is not on this host after its migration")
        }
        var updated = record
        if let element = try? await hypervisor.metadata(.name(vm), namespace: DozeDomainMetadata.namespace) {
            updated.metadata = DozeDomainMetadata(decoding: element)
        }
        vms[vm] = updated
        log.info("VM arrived by migration", metadata: ["doze/vm": "\(vm)"])
    }

    // MARK: - Draining

    public var isDraining: Bool { config.draining == true }

    public func setDraining(_ draining: Bool) async throws(DozeError) {
        try updateConfig { $0.draining = draining ? true : nil }
        log.notice(draining ? "host drained: takes no new VMs" : "host undrained: takes new VMs again")
    }
}
