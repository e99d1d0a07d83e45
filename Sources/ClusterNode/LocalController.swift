import ClusterAPI
import ClusterCore
import ClusterWire
import Foundation
import Hypervisor
import Logging

/// The local-controller role: manages every VM of one hypervisor host.
///
/// The actor owns the controller's books (VM records, reservations, configuration). Every hypervisor call
/// goes to the hypervisor's own thread; capacity for a VM being started is reserved before the first
/// `await`, so concurrent starts can never together exceed the quota.
public actor LocalController: LocalControllerBackend {
    struct VMRecord: Sendable {
        var info: DomainInfo
        /// Doze's metadata element of the domain: what it carries from host to host and across restarts.
        var metadata = DozeDomainMetadata()

        var status: VMStatus { LocalController.status(of: info.state) }
        var rxBytes: Double { metadata.rxBytes }
        var txBytes: Double { metadata.txBytes }
        var usage: HostUsage {
            info.state.isActive ? HostUsage(vcpus: info.vcpus, memoryMiB: HostUsage.memoryMiB(fromKiB: info.memoryKiB)) : HostUsage()
        }
    }

    public nonisolated let id: String
    public nonisolated let hypervisor: any Hypervisor
    /// Builds the domain XML of submitted VMs for the domain types this host runs (chosen once at start).
    nonisolated let preparation: DomainPreparation
    let settings: LocalControllerSettings
    let node: NodeInfo
    let log: Logger
    private var configStore: ControllerConfigStore
    var config: ControllerConfiguration { configStore.current }
    var journal: TestDriverJournal?
    /// Samples for `/hypervisor/metrics`, made from successive readings by `metricsSeries` (LocalController+Metrics.swift).
    let metrics: MetricsStore
    var metricsSeries: HostMetricsSeries
    /// Each running VM's smoothed use, from readings taken every `settings.usageInterval` (LocalController+Usage.swift).
    var usageSampler: VMUsageSampler
    var vms: [String: VMRecord] = [:]
    /// Floating IPs this host translates: address → the VM's switch address.
    var floatingIPs: [String: String] = [:]
    /// Capacity held by VMs being created or grown, by VM name.
    var reservations: [String: HostUsage] = [:]
    /// Migrations this host runs as the source.
    nonisolated let migrations: MigrationRunner
    /// Room held for VMs on their way here, by VM name: part of the capacity books (LocalController+Migration.swift).
    var incomingMigrations: [String: IncomingHold] = [:]
    /// Where clients reach this controller; filled in once the HTTP server listens.
    private var advertisedAddress: NetworkAddress?

    // MARK: - Start

    /// Opens the hypervisor, loads (or creates) the state directory and adopts every domain already on the host.
    public static func start(settings: LocalControllerSettings) async throws -> LocalController {
        try FileManager.default.createDirectory(atPath: settings.stateDirectory, withIntermediateDirectories: true)
        // Two controllers on one state directory would fight over its journal and configuration.
        try StateDirectoryLock.acquire(settings.stateDirectory)
        var journal = TestDriverJournal(uri: settings.hypervisorURI, stateDirectory: settings.stateDirectory)
        let openURI = try journal?.prepare() ?? settings.hypervisorURI
        let host = try await settings.openHypervisor(openURI)
        if var newJournal = journal, !newJournal.isInitialized {
            var existing: [(DomainInfo, String)] = []
            for domain in try await host.listDomains() {
                existing.append((domain, try await host.xml(.name(domain.name), secure: false)))
            }
            try newJournal.initialize(with: existing)
            journal = newJournal
        }
        let node = try await host.nodeInfo()
        let configStore = try ControllerConfigStore.open(stateDirectory: settings.stateDirectory)
        let controller = LocalController(
            settings: settings, hypervisor: host, node: node, configStore: configStore, journal: journal,
            metrics: try MetricsStore(directory: settings.stateDirectory + "/metrics"))
        try await controller.adoptDomains()
        try await controller.reconcilePools()
        await controller.ensureVolumePool()
        Task { await controller.migrations.prepareSpareConnection() }
        return controller
    }

    private init(settings: LocalControllerSettings, hypervisor: any Hypervisor, node: NodeInfo,
                 configStore: ControllerConfigStore, journal: TestDriverJournal?, metrics: MetricsStore) {
        self.id = configStore.current.id
        self.settings = settings
        self.hypervisor = hypervisor
        self.node = node
        self.configStore = configStore
        self.journal = journal
        self.metrics = metrics
        self.metricsSeries = HostMetricsSeries(retentionDays: settings.metricsRetentionDays)
        self.usageSampler = VMUsageSampler(estimator: settings.usageEstimator)
        var log = settings.logger
        log[metadataKey: "doze/role"] = "lc"
        log[metadataKey: "doze/node"] = "\(configStore.current.id)"
        self.log = log
        self.migrations = MigrationRunner(hypervisor: hypervisor, settings: settings, log: log)
        let choice = DomainTypeChoice.choose(uri: settings.hypervisorURI, accelerator: settings.accelerator)
        self.preparation = DomainPreparation(supportedDomainTypes: choice.types)
        log.info("accelerator: \(choice.reason)", metadata: ["doze/domain-types": "\(choice.types)",
                                                       "doze/migration-uri": "\(settings.migrationURI ?? "none")"])
    }

    /// Snooze forgot every VM when a controller restarted; Doze lists the host and manages what it finds.
    private func adoptDomains() async throws {
        var adopted: [String: VMRecord] = [:]
        for info in try await hypervisor.listDomains() {
            var record = VMRecord(info: info)
            if let element = try? await hypervisor.metadata(.uuid(info.uuid), namespace: DozeDomainMetadata.namespace) {
                record.metadata = DozeDomainMetadata(decoding: element)
            }
            adopted[info.name] = record
        }
        vms = adopted
        log.info("adopted the host's domains", metadata: ["doze/vms": "\(adopted.count)", "doze/hypervisor": "\(hypervisor.uri)"])
    }

    /// Volume pools are in the configuration; a host that lost them (a restarted test-driver host) gets them back.
    private func reconcilePools() async throws {
        for pool in config.pools {
            if (try? await hypervisor.storagePool(name: Self.libvirtPoolName(pool.uuid))) == nil {
                try FileManager.default.createDirectory(atPath: pool.path, withIntermediateDirectories: true)
                _ = try await hypervisor.createDirectoryPool(name: Self.libvirtPoolName(pool.uuid), uuid: pool.uuid, path: pool.path)
            }
        }
    }

    func setAdvertisedAddress(_ address: NetworkAddress) { advertisedAddress = address }

    // MARK: - Books

    static func status(of state: DomainState) -> VMStatus {
        switch state {
        case .running, .blocked: return .running
        case .paused, .suspendedToMemory: return .paused
        case .shuttingDown: return .shutdownPending
        case .shutOff, .crashed: return .offline
        case .noState: return .unknown
        }
    }

    var usage: HostUsage {
        // A VM arriving by migration shows up (paused) before it has arrived: its room is already reserved.
        vms.reduce(HostUsage()) { total, entry in incomingMigrations[entry.key] == nil ? total + entry.value.usage : total }
            + reservations.values.reduce(HostUsage(), +)
    }

    var effectiveQuota: HostQuota {
        config.quota ?? HostQuota(cpuMax: node.cpus, memoryMaxMiB: HostUsage.memoryMiB(fromKiB: node.memoryKiB))
    }

    /// Re-reads one domain from the hypervisor and updates the books (and the test-host journal).
    @discardableResult
    func refresh(_ name: String, xmlChanged: Bool = false) async throws(DozeError) -> VMRecord? {
        let info: DomainInfo
        do {
            info = try await hypervisor.domain(.name(name))
        } catch {
            guard error.code == .notFound else { throw Self.map(error, doing: "read VM '\(name)'") }
            forget(name)
            return nil
        }
        var record = vms[name] ?? VMRecord(info: info)
        record.info = info
        vms[name] = record
        if journal != nil {
            let xml = xmlChanged ? try? await hypervisor.xml(.name(name), secure: false) : nil
            try? journal?.record(info, xml: xml)
        }
        return record
    }

    /// The VM is no longer on this host (gone, or migrated away): out of the books and the test-host journal.
    func forget(_ name: String) {
        guard let gone = vms.removeValue(forKey: name) else { return }
        journal?.forget(uuid: gone.info.uuid)
        if !gone.metadata.networks.isEmpty {
            Task { await self.releaseNetworks(gone.metadata.networks, vm: name) }
        }
    }

    /// The current record of a VM, fresh from the hypervisor; `.notFound` if the host has no such VM.
    func current(_ name: String) async throws(DozeError) -> VMRecord {
        try Validation.vmName(name)
        guard let record = try await refresh(name) else { throw DozeError(.notFound, "unknown VM '\(name)'") }
        return record
    }

    /// The hypervisor's message already says what was being done and carries libvirt's own words.
    static func map(_ error: HypervisorError, doing what: String) -> DozeError {
        let message = error.code == .backend(-1) ? "\(what): \(error.message)" : error.message
        switch error.code {
        case .notFound: return DozeError(.notFound, message)
        case .alreadyExists: return DozeError(.conflict, message)
        case .invalidSpec: return DozeError(.badRequest, message)
        case .invalidState: return DozeError(.conflict, message)
        case .unsupported: return DozeError(.unsupported, message)
        case .connection: return DozeError(.unavailable, message)
        case .backend: return DozeError(.hypervisor, message)
        }
    }

    // MARK: - Starting VMs

    /// Parses a domain XML off the actor: reading a large document must not hold up the host's other requests.
    @concurrent nonisolated static func describe(_ xml: String) async throws(DozeError) -> DomainDescription {
        do { return try DomainDescription(xml: xml) } catch {
            throw DozeError(.badRequest, "invalid domain XML: \(error.message)")
        }
    }

    /// Defines and starts one VM after checking its XML, name, paths and the quota. Nothing is left behind on failure.
    /// `created` is false when a VM of the same name and the same definition was there already (a retry).
    /// `metadata` is what the submission said (its definition digest is filled in here).
    /// `metadata.volumes` are created (in the VM-disk pool) once the VM's room is reserved, and deleted again if it
    /// does not start. The answer's XML is the running domain's (nil for a retry that found the VM).
    func startVM(xml: String, expectedName: String?,
                 metadata submitted: DozeDomainMetadata = DozeDomainMetadata()) async throws(DozeError) -> (record: VMRecord, created: Bool, xml: String?) {
        let description = try await Self.describe(xml)
        let name = description.name
        try Validation.vmName(name)
        if let expectedName, !expectedName.isEmpty, expectedName != name {
            throw DozeError(.badRequest, "VM id '\(expectedName)' does not match the domain name '\(name)' in its XML")
        }
        let digest = Digests.sha256Hex(xml)
        if let existing = vms[name], reservations[name] == nil {
            // A client whose answer was lost retries: the same definition finds the VM it made, a different one is a conflict.
            guard existing.metadata.definitionDigest == digest else {
                throw DozeError(.conflict, "VM '\(name)' already exists on this host"
                    + (existing.metadata.definitionDigest == nil ? "" : " with a different definition"))
            }
            return (existing, false, nil)
        }
        guard vms[name] == nil, reservations[name] == nil else { throw DozeError(.conflict, "VM '\(name)' already exists on this host") }
        if let uuid = description.uuid?.lowercased(), let other = vms.values.first(where: { $0.info.uuid == uuid }) {
            throw DozeError(.conflict, "UUID \(uuid) is already used by VM '\(other.info.name)'")
        }
        try checkPaths(description, volumes: submitted.volumes)
        let demand = HostUsage(vcpus: description.vcpus, memoryMiB: HostUsage.memoryMiB(fromKiB: description.memoryKiB))
        try effectiveQuota.admit(demand, onTopOf: usage)
        reservations[name] = demand
        defer { reservations[name] = nil }

        var metadata = submitted
        metadata.definitionDigest = digest
        try await createVolumes(metadata.volumes, for: name)
        let created: (info: DomainInfo, xml: String)
        do {
            created = try await hypervisor.defineAndStart(xml: xml, metadata: metadata.domainMetadata)
        } catch {
            await deleteVolumes(metadata.volumes, of: name)
            throw Self.map(error, doing: "hypervisor refused to start '\(name)'")
        }
        let record = VMRecord(info: created.info, metadata: metadata)
        vms[name] = record
        try? journal?.record(created.info, xml: created.xml)
        log.info("started VM", metadata: ["doze/vm": "\(name)", "doze/vcpus": "\(description.vcpus)"])
        return (record, true, created.xml)
    }

    public func startVirtualMachines(_ request: VirtualMachineSubmission, partial: Bool) async throws(DozeError) -> VirtualMachineSubmission {
        guard !request.virtualMachineMetaData.isEmpty else {
            throw DozeError(.badRequest, "virtualMachineMetaData is empty: nothing to start")
        }
        var results: [VirtualMachineMetaData] = []
        var failures: [DozeError] = []
        for var meta in request.virtualMachineMetaData {
            let demand = meta.requested
            do throws(DozeError) {
                try Validation.networkDemand(demand.rxBytes, what: "rxBytes")
                try Validation.networkDemand(demand.txBytes, what: "txBytes")
                var submission = DomainPreparation.Submission(meta)
                submission.networks = meta.networks ?? []
                let prepared = try preparation.prepare(submission, imagePool: Self.listImagePool(config.imagePool.path),
                                                       volumePool: volumePool)
                var submitted = DozeDomainMetadata(rxBytes: demand.rxBytes, txBytes: demand.txBytes, ipAddress: meta.ipAddress,
                                                   adaptations: prepared.adaptations)
                submitted.highlyAvailable = meta.ha == true
                submitted.tenant = meta.tenant
                submitted.volumes = prepared.volumes
                submitted.networks = submission.networks
                try await prepareNetworks(submission.networks, vm: meta.virtualMachineLocation.virtualMachineId)
                let record: VMRecord, liveXML: String?
                do throws(DozeError) {
                    (record, _, liveXML) = try await startVM(xml: prepared.xml, expectedName: meta.virtualMachineLocation.virtualMachineId,
                                                             metadata: submitted)
                } catch {
                    await releaseNetworks(submission.networks, vm: meta.virtualMachineLocation.virtualMachineId)
                    throw error
                }
                let imageId = meta.imageId, disks = meta.disks
                meta = await metaData(record, xml: domainXMLWithoutSecrets(prepared.xml))
                meta.imageId = imageId
                meta.disks = disks
                // The answer shows the definition as prepared; the VNC port the host picked is in the live one.
                if let liveXML { meta.vncAddr = vncAddr(inDomainXML: liveXML) }
            } catch {
                failures.append(error)
                meta.status = .error
                meta.errorCode = Self.errorCode(for: error)
                meta.errorMessage = error.message
                meta.locate(onController: id, at: advertisedAddress)
            }
            results.append(meta)
        }
        // All failed: an error status, not a 200 that did nothing (unless the caller wants each VM's outcome).
        if !partial, failures.count == results.count, let first = failures.first {
            let detail = zip(results, failures).map { "\($0.virtualMachineLocation.virtualMachineId): \($1.message)" }
            throw DozeError(first.kind, detail.joined(separator: "; "))
        }
        return VirtualMachineSubmission(virtualMachineMetaData: results)
    }

    /// What the image pool directory holds: every entry, and which of them are files (symlinks followed).
    static func listImagePool(_ path: String) -> ImagePoolListing {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        let files = entries.filter { entry in
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: path + "/" + entry, isDirectory: &isDirectory) && !isDirectory.boolValue
        }
        var sizes: [String: UInt64] = [:]
        for file in files {
            sizes[file] = (try? FileManager.default.attributesOfItem(atPath: path + "/" + file)[.size] as? NSNumber)?.uint64Value
        }
        return ImagePoolListing(path: path, entries: entries, files: Set(files), sizes: sizes)
    }

    /// One VM's current meta data (Snooze's `getVirtualMachineMetaData`, asked by its group manager).
    public func virtualMachineMetaData(vm: String) async throws(DozeError) -> VirtualMachineMetaData {
        await metaData(try await current(vm))
    }

    static func errorCode(for error: DozeError) -> VMErrorCode {
        switch error.kind {
        case .quotaExceeded: return .quotaExceeded
        case .notFound: return .imageNotFound
        case .badRequest, .forbidden, .conflict, .payloadTooLarge: return .invalidTemplate
        default: return .failedToStartOnHypervisor
        }
    }

    func metaData(_ record: VMRecord, xml: String? = nil) async -> VirtualMachineMetaData {
        let liveXML: String
        // Not the secure form: metadata is listed to clients, and that form shows the VNC console's password.
        if let xml { liveXML = xml } else { liveXML = (try? await hypervisor.xml(.name(record.info.name), secure: false)) ?? "" }
        var meta = VirtualMachineMetaData(
            location: VirtualMachineLocation(virtualMachineId: record.info.name),
            status: record.status, errorCode: .none, ipAddress: record.metadata.ipAddress, xmlRepresentation: liveXML,
            requestedCapacity: ResourceVector(vcpus: Double(record.info.vcpus), memoryKiB: Double(record.info.memoryKiB),
                                              rxBytes: record.rxBytes, txBytes: record.txBytes),
            isAssigned: true, adaptations: record.metadata.adaptations.isEmpty ? nil : record.metadata.adaptations)
        meta.locate(onController: id, at: advertisedAddress)
        // Snooze's monitoring entry: the VM's use as sampled here ([vCPUs in use, memory KiB, rx B/s, tx B/s]).
        if record.info.state.isActive, let usage = usageSampler.usage(of: record.info.name) {
            meta.usedCapacity = ["\(usage.sampledAtMs)": VirtualMachineMonitoringData(
                timeStamp: usage.sampledAtMs,
                usedCapacity: [usage.vcpusInUse, usage.memoryUsedMiB * 1024, usage.rxBytesPerSecond, usage.txBytesPerSecond])]
        }
        if record.metadata.highlyAvailable { meta.ha = true }
        meta.tenant = record.metadata.tenant
        if !record.metadata.networks.isEmpty { meta.networks = record.metadata.networks }
        meta.vncAddr = vncAddr(inDomainXML: liveXML)
        return meta
    }

    /// `HOST:PORT` of the domain's VNC console (this controller's address), once the host has assigned the port.
    func vncAddr(inDomainXML xml: String) -> String? {
        guard let display = KVMAppBook.vncDisplay(inDomainXML: xml), let host = advertisedAddress?.address else { return nil }
        return "\(host):\(5900 + display)"
    }

    // MARK: - VM operations

    public func suspend(vm: String) async throws(DozeError) {
        try await refuseWhileMigrating(vm)
        try VMOperation.suspend.check(current: try await current(vm).status, vm: vm)
        do { try await hypervisor.suspend(.name(vm)) } catch { throw Self.map(error, doing: "suspend '\(vm)'") }
        try await refresh(vm)
    }

    public func resume(vm: String) async throws(DozeError) {
        try VMOperation.resume.check(current: try await current(vm).status, vm: vm)
        do { try await hypervisor.resume(.name(vm)) } catch { throw Self.map(error, doing: "resume '\(vm)'") }
        try await refresh(vm)
    }

    public func shutdown(vm: String) async throws(DozeError) {
        try await refuseWhileMigrating(vm)
        try VMOperation.shutdown.check(current: try await current(vm).status, vm: vm)
        do { try await hypervisor.shutdown(.name(vm)) } catch { throw Self.map(error, doing: "shut down '\(vm)'") }
        try await refresh(vm)
    }

    public func reboot(vm: String) async throws(DozeError) {
        try await refuseWhileMigrating(vm)
        try VMOperation.reboot.check(current: try await current(vm).status, vm: vm)
        do { try await hypervisor.reboot(.name(vm)) } catch { throw Self.map(error, doing: "reboot '\(vm)'") }
        try await refresh(vm)
    }

    /// Starts a shut-off VM again, within the quota.
    public func start(vm: String) async throws(DozeError) {
        let record = try await current(vm)
        try VMOperation.start.check(current: record.status, vm: vm)
        let demand = HostUsage(vcpus: record.info.vcpus, memoryMiB: HostUsage.memoryMiB(fromKiB: record.info.memoryKiB))
        try effectiveQuota.admit(demand, onTopOf: usage)
        reservations[vm] = demand
        defer { reservations[vm] = nil }
        do { _ = try await hypervisor.start(.name(vm)) } catch { throw Self.map(error, doing: "start '\(vm)'") }
        try await refresh(vm)
    }

    public func destroy(vm: String) async throws(DozeError) {
        try await refuseWhileMigrating(vm)
        _ = try await remove(vm)
    }

    /// Stops the VM if it runs and removes its definition.
    func remove(_ vm: String) async throws(DozeError) -> VMRecord {
        let record = try await current(vm)
        var failure: HypervisorError?
        do {
            if record.info.state.isActive { try await hypervisor.destroy(.name(vm)) }
            if record.info.persistent { try await hypervisor.undefine(.name(vm)) }
        } catch {
            failure = error
        }
        if let failure, failure.code != .notFound {
            _ = try? await refresh(vm)
            throw Self.map(failure, doing: "destroy '\(vm)'")
        }
        vms[vm] = nil
        journal?.forget(uuid: record.info.uuid)
        await releaseNetworks(record.metadata.networks, vm: vm)
        await deleteVolumes(record.metadata.volumes, of: vm)
        log.info("destroyed VM", metadata: ["doze/vm": "\(vm)"])
        return record
    }

    public func resize(_ request: ResizeRequest) async throws(DozeError) -> VirtualMachineMetaData {
        try await refuseWhileMigrating(request.virtualMachineLocation.virtualMachineId)
        let vm = request.virtualMachineLocation.virtualMachineId
        let record = try await current(vm)
        try VMOperation.resize.check(current: record.status, vm: vm)
        let wanted = ResourceVector(snoozeArray: request.resizedCapacity)
        guard wanted.vcpus <= 0 || (Int(exactly: wanted.vcpus).map { $0 <= DomainDescription.maxVCPUs } ?? false) else {
            throw DozeError(.badRequest, "vcpus must be a whole number from 1 to \(DomainDescription.maxVCPUs), got \(wanted.vcpus)")
        }
        guard wanted.memoryKiB <= 0 || (UInt64(exactly: wanted.memoryKiB).map { $0 <= DomainDescription.maxMemoryKiB } ?? false) else {
            throw DozeError(.badRequest, "memory must be whole KiB up to \(DomainDescription.maxMemoryKiB), got \(wanted.memoryKiB)")
        }
        // -1 keeps a value (Snooze's resize arrays); any other value must be a real demand.
        if wanted.rxBytes != -1 { try Validation.networkDemand(wanted.rxBytes, what: "rxBytes") }
        if wanted.txBytes != -1 { try Validation.networkDemand(wanted.txBytes, what: "txBytes") }
        let vcpus = wanted.vcpus > 0 ? Int(wanted.vcpus) : record.info.vcpus
        let memoryKiB = wanted.memoryKiB > 0 ? UInt64(wanted.memoryKiB) : record.info.memoryKiB
        let now = HostUsage(vcpus: record.info.vcpus, memoryMiB: HostUsage.memoryMiB(fromKiB: record.info.memoryKiB))
        let next = HostUsage(vcpus: vcpus, memoryMiB: HostUsage.memoryMiB(fromKiB: memoryKiB))
        let growth = HostUsage(vcpus: max(0, next.vcpus - now.vcpus), memoryMiB: max(0, next.memoryMiB - now.memoryMiB))
        // One change at a time per VM: a second reservation under the same name would erase the first.
        guard reservations[vm] == nil else {
            throw DozeError(.conflict, "VM '\(vm)' is being changed by another request; retry when it has finished")
        }
        try effectiveQuota.admit(growth, onTopOf: usage)
        reservations[vm] = growth
        defer { reservations[vm] = nil }
        do {
            if vcpus != record.info.vcpus { try await hypervisor.setVCPUs(.name(vm), count: vcpus) }
            if memoryKiB != record.info.memoryKiB { try await hypervisor.setMemory(.name(vm), kib: memoryKiB) }
        } catch {
            _ = try? await refresh(vm)
            throw Self.map(error, doing: "resize '\(vm)'")
        }
        // The VM may have been deleted meanwhile: never write a record back that refresh removed.
        guard try await refresh(vm, xmlChanged: true) != nil else { throw DozeError(.notFound, "VM '\(vm)' went away during the resize") }
        if wanted.rxBytes > 0 { vms[vm]?.metadata.rxBytes = wanted.rxBytes }
        if wanted.txBytes > 0 { vms[vm]?.metadata.txBytes = wanted.txBytes }
        guard let record = vms[vm] else { throw DozeError(.notFound, "VM '\(vm)' went away during the resize") }
        if wanted.rxBytes > 0 || wanted.txBytes > 0 {
            try? await hypervisor.setMetadata(.name(vm), xml: record.metadata.encode(), key: DozeDomainMetadata.key,
                                              namespace: DozeDomainMetadata.namespace)
        }
        return await metaData(record)
    }

    public func virtualMachines() async throws(DozeError) -> [VirtualMachineMetaData] {
        var result: [VirtualMachineMetaData] = []
        for name in vms.keys.sorted() {
            if let record = vms[name] { result.append(await metaData(record)) }
        }
        return result
    }

    /// Follows the host's lifecycle events so that changes made behind the controller's back (a guest powering
    /// off, `virsh` on a real host) reach the books.
    func followEvents() async {
        guard let events = try? await hypervisor.events() else {
            log.warning("the hypervisor offers no lifecycle events; the books follow API calls only")
            return
        }
        for await event in events {
            if Task.isCancelled { return }
            // Most events only confirm what the controller's own call already recorded: skip those.
            let state = vms[event.domain]?.info.state
            switch event.kind {
            case .defined where state != nil: continue
            case .started where state == .running, .resumed where state == .running: continue
            case .suspended where state == .paused: continue
            default: _ = try? await refresh(event.domain)
            }
        }
    }
}

extension DomainPreparation.Submission {
    init(_ meta: VirtualMachineMetaData) {
        let capacity = meta.requested
        self.init(name: meta.virtualMachineLocation.virtualMachineId, template: meta.xmlRepresentation, imageId: meta.imageId,
                  vcpus: capacity.vcpus, memoryKiB: capacity.memoryKiB, ipAddress: meta.ipAddress, vncPassword: meta.vncPassword,
                  dataDisksGiB: meta.disks ?? [])
    }
}

// MARK: - Small helpers

extension LocalController {
    static func libvirtPoolName(_ uuid: String) -> String { "doze-" + uuid.prefix(8) }

    func summary(_ record: VMRecord) -> VMSummary {
        VMSummary(name: record.info.name, uuid: record.info.uuid, state: record.info.state.rawValue, status: record.status,
                  vcpus: record.info.vcpus, memoryMB: HostUsage.memoryMiB(fromKiB: record.info.memoryKiB),
                  persistent: record.info.persistent)
    }

    func updateConfig(_ change: (inout ControllerConfiguration) -> Void) throws(DozeError) {
        try configStore.update(change)
    }
}
