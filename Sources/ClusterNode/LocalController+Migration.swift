import ClusterAPI
import ClusterCore
import ClusterTransport
import ClusterWire
import Foundation
import Hypervisor
import Logging
import NIOHTTP1

/// A migration this controller runs as its source.
struct MigrationJob: Sendable {
    var status: LocalMigrationStatus
    var abortRequested = false
    var finishedAt: ContinuousClock.Instant?
}

/// Room held on a destination for a VM on its way in.
struct IncomingHold: Sendable {
    var id: String
    var demand: HostUsage
    var since: ContinuousClock.Instant
}

/// Moving VMs between hosts. The source controller runs the move: a live peer-to-peer libvirt migration between
/// real daemons, or, where libvirt cannot migrate (its test driver), save here and restore there, recorded as
/// `offline`. The destination holds room for the VM first, so a move to a host without capacity is refused
/// before anything happens. Whatever fails, the VM keeps running where it was, never left paused by us.
extension LocalController {
    static let finishedJobMemory: Duration = .seconds(600)
    static let incomingHoldLimit: Duration = .seconds(1800)
    static let progressInterval: Duration = .milliseconds(500)

    var isTestDriver: Bool { hypervisor.uri.hasPrefix("test:") }
    var driverName: String {
        String(settings.hypervisorURI.prefix { $0 != ":" && $0 != "+" })
    }

    /// The unfinished migration of `vm`, if this host runs one.
    func activeMigration(of vm: String) -> MigrationJob? {
        migrationJobs.values.first { $0.status.vm == vm && !$0.status.state.isFinal }
    }

    /// Control operations wait for the move to end (or its abort): libvirt would refuse them half-way anyway.
    func refuseWhileMigrating(_ vm: String) throws(DozeError) {
        if let job = activeMigration(of: vm) {
            throw DozeError(.conflict, "VM '\(vm)' is migrating (migration \(job.status.id)); wait for it to end or abort it")
        }
        if incomingMigrations[vm] != nil {
            throw DozeError(.conflict, "VM '\(vm)' is migrating to this host; wait for it to arrive")
        }
    }

    // MARK: - Source

    /// Starts a migration and returns at once; `migrationStatus(id:wait:)` follows it.
    public func startMigration(_ command: LocalMigrationCommand) async throws(DozeError) -> LocalMigrationStatus {
        let vm = command.vm
        if let existing = migrationJobs[command.id] { return existing.status }   // asked again by a new leader
        let record = try await current(vm)
        try refuseWhileMigrating(vm)
        switch record.status {
        case .running: break
        case .paused:
            throw DozeError(.conflict, "VM '\(vm)' is suspended; resume it before migrating (Doze migrates running guests only)")
        default:
            throw DozeError(.conflict, "VM '\(vm)' is \(record.status.rawValue.lowercased()); only a running VM can be migrated")
        }
        let requested = command.options.mode ?? "auto"
        guard MigrationOptions.modes.contains(requested) else {
            throw DozeError(.badRequest, "mode must be one of \(MigrationOptions.modes.joined(separator: ", ")), got '\(requested)'")
        }
        let destination = Endpoint(host: command.destination.address, port: command.destination.port)
        let peers = PeerClient(timeout: .seconds(10))
        let hold = IncomingMigration(id: command.id, vm: vm, vcpus: record.info.vcpus,
                                     memoryMiB: HostUsage.memoryMiB(fromKiB: record.info.memoryKiB))
        let target: IncomingMigrationAnswer
        do {
            target = try await peers.call(.POST, destination, "/localcontroller?prepareIncomingMigration", body: hold,
                                          as: IncomingMigrationAnswer.self)
        } catch {
            throw remoteError(error, "destination local controller \(command.destinationId) at \(destination) did not answer")
        }
        let canLive = !isTestDriver && target.driver != "test"
        let mode: String
        switch (requested, canLive) {
        case ("offline", _) where !isTestDriver:
            await cancelIncoming(at: destination, command)
            throw DozeError(.badRequest, "offline migration (save and restore) is only offered between test-driver hosts; use mode live or auto")
        case ("live", false):
            await cancelIncoming(at: destination, command)
            throw DozeError(.unsupported, "libvirt's test driver cannot migrate live; use mode auto or offline to move '\(vm)' by save and restore")
        case (_, true): mode = "live"
        default: mode = "offline"
        }
        if mode == "live", target.migrationURI == nil {
            await cancelIncoming(at: destination, command)
            throw DozeError(.unavailable, "local controller \(command.destinationId) has no --migration-uri, so its libvirt daemon cannot be reached for a live migration")
        }
        let status = LocalMigrationStatus(id: command.id, vm: vm, mode: mode, state: .running, progress: MigrationProgress())
        migrationJobs[command.id] = MigrationJob(status: status)
        log.info("migration started", metadata: ["doze/vm": "\(vm)", "doze/migration": "\(command.id)", "doze/mode": "\(mode)",
                                                  "doze/to": "\(command.destinationId)"])
        Task {
            if mode == "live" {
                await self.runLive(command, destination: destination, uri: target.migrationURI!)
            } else {
                await self.runOffline(command, destination: destination)
            }
        }
        return status
    }

    private func cancelIncoming(at destination: Endpoint, _ command: LocalMigrationCommand) async {
        _ = try? await PeerClient(timeout: .seconds(5)).send(.POST, destination, "/localcontroller?cancelIncomingMigration",
                                                             body: IncomingMigration(id: command.id, vm: command.vm, vcpus: 0, memoryMiB: 0))
    }

    private func runLive(_ command: LocalMigrationCommand, destination: Endpoint, uri: String) async {
        let vm = command.vm
        var parameters = LiveMigrationParameters(destinationURI: uri)
        parameters.bandwidthMiBs = command.options.bandwidthMiBs ?? 0
        parameters.maxDowntimeMs = command.options.maxDowntimeMs
        let convergence = command.options.convergence ?? .autoConverge
        parameters.autoConverge = convergence == .autoConverge
        parameters.postCopy = convergence == .postCopy
        parameters.copyStorage = command.options.copyStorage ?? false
        // The migration call blocks its connection's thread for the whole move: it gets a connection of its own,
        // and the controller's connection stays free for progress, abort and everything else.
        let connection: any Hypervisor
        if let spare = spareMigrationConnection {
            spareMigrationConnection = nil
            connection = spare
        } else {
            do { connection = try await settings.openHypervisor(settings.hypervisorURI) } catch {
                await cancelIncoming(at: destination, command)
                finish(command.id, .failed, error: "cannot open a second connection to \(settings.hypervisorURI): \(error.message)")
                return
            }
        }
        defer { Task { await self.prepareSpareConnection() } }
        let watcher = Task { await self.watchProgress(command) }
        var failure: HypervisorError?
        do { try await connection.migrateLive(.name(vm), parameters) } catch { failure = error }
        watcher.cancel()
        await connection.close()
        if let failure {
            await cancelIncoming(at: destination, command)
            await keepRunningHere(vm)
            let aborted = migrationJobs[command.id]?.abortRequested == true
            finish(command.id, aborted ? .aborted : .failed, error: aborted ? "aborted on request; '\(vm)' keeps running here" : failure.message)
            return
        }
        await completeOnSource(command, destination: destination)
    }

    /// Opens the connection the next live migration will use, unless one is ready (real daemons only).
    func prepareSpareConnection() async {
        guard !isTestDriver, spareMigrationConnection == nil,
              let connection = try? await settings.openHypervisor(settings.hypervisorURI) else { return }
        if spareMigrationConnection == nil { spareMigrationConnection = connection } else { await connection.close() }
    }

    /// Job statistics every `progressInterval` while the migration runs; switches to post-copy when asked.
    private func watchProgress(_ command: LocalMigrationCommand) async {
        var switched = false
        while !Task.isCancelled {
            if let stats = try? await hypervisor.jobStats(.name(command.vm), completed: false) {
                migrationJobs[command.id]?.status.progress = Self.progress(stats)
                if command.options.convergence == .postCopy, !switched,
                   Double(stats.elapsedMs) / 1000 >= (command.options.postCopyAfterSeconds ?? 5) {
                    switched = true
                    do { try await hypervisor.startPostCopy(.name(command.vm)) } catch {
                        log.warning("could not switch to post-copy", metadata: ["doze/vm": "\(command.vm)", "error": "\(error.message)"])
                    }
                }
            }
            try? await Task.sleep(for: Self.progressInterval)
        }
    }

    static func progress(_ s: JobStats) -> MigrationProgress {
        MigrationProgress(elapsedMs: s.elapsedMs, dataTotal: s.dataTotal, dataProcessed: s.dataProcessed, dataRemaining: s.dataRemaining,
                          memoryBytesPerSecond: s.memoryBytesPerSecond, iteration: s.iteration, downtimeMs: s.downtimeMs)
    }

    /// After a failed move the guest must run here as before: libvirt resumes it, and if it did not, we do.
    private func keepRunningHere(_ vm: String) async {
        guard let record = try? await refresh(vm) else { return }
        if record.info.state == .paused {
            do { try await hypervisor.resume(.name(vm)) } catch {
                log.error("a failed migration left the guest paused and it could not be resumed", metadata: ["doze/vm": "\(vm)", "error": "\(error.message)"])
            }
            _ = try? await refresh(vm)
        }
    }

    /// The VM now runs on the destination: the destination adopts it (and reports libvirt's final figures); here it is gone.
    private func completeOnSource(_ command: LocalMigrationCommand, destination: Endpoint) async {
        let vm = command.vm
        var final = migrationJobs[command.id]?.status.progress
        do {
            let arrived = try await PeerClient(timeout: .seconds(30)).call(
                .POST, destination, "/localcontroller?finishIncomingMigration",
                body: IncomingMigration(id: command.id, vm: vm, vcpus: 0, memoryMiB: 0), as: LocalMigrationStatus.self)
            if let p = arrived.progress { final = p }
        } catch {
            log.warning("the destination did not confirm the migrated VM; its heartbeat will", metadata: ["doze/vm": "\(vm)", "error": "\(error)"])
        }
        if let gone = vms.removeValue(forKey: vm) { journal?.forget(uuid: gone.info.uuid) }
        migrationJobs[command.id]?.status.progress = final
        finish(command.id, .completed, error: nil)
    }

    private func finish(_ id: String, _ state: MigrationState, error: String?) {
        guard var job = migrationJobs[id] else { return }
        job.status.state = state
        job.status.error = error
        job.finishedAt = .now
        migrationJobs[id] = job
        for waiter in (migrationWaiters.removeValue(forKey: id) ?? [:]).values { waiter.resume() }
        log.info("migration ended", metadata: ["doze/vm": "\(job.status.vm)", "doze/migration": "\(id)", "doze/state": "\(state.rawValue)",
                                                "error": "\(error ?? "")"])
        let now = ContinuousClock.now
        for (key, j) in migrationJobs where j.finishedAt.map({ now - $0 > Self.finishedJobMemory }) == true { migrationJobs[key] = nil }
    }

    /// Save here, restore there (test-driver hosts). The saved image travels in the request: hosts share no disk.
    private func runOffline(_ command: LocalMigrationCommand, destination: Endpoint) async {
        let vm = command.vm
        let started = ContinuousClock.now
        let directory = settings.stateDirectory + "/migrations"
        let path = "\(directory)/\(command.id).save"
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try await hypervisor.save(.name(vm), to: path)
        } catch {
            await cancelIncoming(at: destination, command)
            await keepRunningHere(vm)
            finish(command.id, .failed, error: "save of '\(vm)' failed: \(error)")
            return
        }
        _ = try? await refresh(vm)
        func restoreHere(_ state: MigrationState, _ why: String) async {
            do {
                _ = try await hypervisor.restore(from: path)
                _ = try? await refresh(vm)
            } catch {
                log.error("could not restore the VM after a failed offline migration", metadata: ["doze/vm": "\(vm)", "error": "\(error.message)"])
            }
            finish(command.id, state, error: why)
        }
        if migrationJobs[command.id]?.abortRequested == true {
            await cancelIncoming(at: destination, command)
            await restoreHere(.aborted, "aborted on request; '\(vm)' keeps running here")
            return
        }
        guard let image = FileManager.default.contents(atPath: path) else {
            await cancelIncoming(at: destination, command)
            await restoreHere(.failed, "the saved image of '\(vm)' could not be read")
            return
        }
        do {
            _ = try await PeerClient(timeout: .seconds(60)).call(
                .POST, destination, "/localcontroller?restoreMigratedVirtualMachine",
                body: OfflineMigrationImage(id: command.id, vm: vm, image: image), as: LocalMigrationStatus.self)
        } catch {
            await cancelIncoming(at: destination, command)
            await restoreHere(.failed, remoteError(error, "the destination did not restore '\(vm)'").message)
            return
        }
        // Moved: the shut-off definition left here goes.
        try? await hypervisor.undefine(.name(vm))
        if let gone = vms.removeValue(forKey: vm) { journal?.forget(uuid: gone.info.uuid) }
        let elapsed = started.duration(to: .now)
        migrationJobs[command.id]?.status.progress = MigrationProgress(
            elapsedMs: UInt64(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000),
            dataTotal: UInt64(image.count), dataProcessed: UInt64(image.count))
        finish(command.id, .completed, error: nil)
    }

    /// The migration's state; with `wait`, returns as soon as it is final or after `wait`.
    public func migrationStatus(id: String, wait: Duration?) async throws(DozeError) -> LocalMigrationStatus {
        guard migrationJobs[id] != nil else { throw DozeError(.notFound, "no migration '\(id)' on this host") }
        if let wait, migrationJobs[id]?.status.state.isFinal == false {
            // Woken the moment the migration ends (`finish`), or by the timer.
            let token = UUID()
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                migrationWaiters[id, default: [:]][token] = c
                Task {
                    try? await Task.sleep(for: wait)
                    self.timeOutWaiter(id, token)
                }
            }
        }
        guard let job = migrationJobs[id] else { throw DozeError(.notFound, "no migration '\(id)' on this host") }
        return job.status
    }

    private func timeOutWaiter(_ id: String, _ token: UUID) {
        migrationWaiters[id]?.removeValue(forKey: token)?.resume()
    }

    /// Aborts a running migration; the VM keeps running here.
    public func abortMigration(id: String) async throws(DozeError) -> LocalMigrationStatus {
        guard let job = migrationJobs[id] else { throw DozeError(.notFound, "no migration '\(id)' on this host") }
        guard !job.status.state.isFinal else { return job.status }
        migrationJobs[id]?.abortRequested = true
        if job.status.mode == "live" {
            do { try await hypervisor.abortJob(.name(job.status.vm)) } catch {
                // The job may have just ended; its final state says what happened.
                log.info("abort found no job to stop", metadata: ["doze/migration": "\(id)", "error": "\(error.message)"])
            }
        }
        return try await migrationStatus(id: id, wait: .seconds(30))
    }

    // MARK: - Destination

    /// Holds room for an incoming VM (refused when it does not fit the quota) and says how to reach this host.
    public func prepareIncomingMigration(_ request: IncomingMigration) async throws(DozeError) -> IncomingMigrationAnswer {
        try Validation.vmName(request.vm)
        let now = ContinuousClock.now
        for (vm, hold) in incomingMigrations where now - hold.since > Self.incomingHoldLimit {
            incomingMigrations[vm] = nil
            reservations[vm] = nil
        }
        if let hold = incomingMigrations[request.vm] {
            guard hold.id == request.id else {
                throw DozeError(.conflict, "VM '\(request.vm)' is already on its way here (migration \(hold.id))")
            }
            return IncomingMigrationAnswer(migrationURI: settings.migrationURI, driver: driverName)
        }
        guard vms[request.vm] == nil, reservations[request.vm] == nil else {
            throw DozeError(.conflict, "local controller \(id) already has a VM named '\(request.vm)'")
        }
        let demand = HostUsage(vcpus: request.vcpus, memoryMiB: request.memoryMiB)
        do { try effectiveQuota.admit(demand, onTopOf: usage) } catch {
            throw DozeError(.quotaExceeded, "local controller \(id) has no room for '\(request.vm)': \(error.message)")
        }
        reservations[request.vm] = demand
        incomingMigrations[request.vm] = IncomingHold(id: request.id, demand: demand, since: now)
        return IncomingMigrationAnswer(migrationURI: settings.migrationURI, driver: driverName)
    }

    public func cancelIncomingMigration(_ request: IncomingMigration) async throws(DozeError) {
        guard let hold = incomingMigrations[request.vm], hold.id == request.id else { return }
        incomingMigrations[request.vm] = nil
        reservations[request.vm] = nil
        // libvirt has removed the half-arrived domain by now; drop it from the books without waiting for its event.
        _ = try? await refresh(request.vm)
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
                                    progress: completed.map(Self.progress))
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
