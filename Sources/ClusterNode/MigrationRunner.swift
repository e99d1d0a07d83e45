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

/// Runs the migrations a host is the source of, and keeps their jobs, whoever waits for them to end, and a
/// libvirt connection opened ahead of the next live migration. The source runs the move: a live peer-to-peer
/// libvirt migration between real daemons, or, where libvirt cannot migrate (its test driver), save here and
/// restore there, recorded as `offline`. Whatever fails, the VM keeps running where it was, never left paused.
///
/// The controller's books stay the controller's: each call that changes them is given the controller, which the
/// migration's task then keeps alive until the move has ended.
actor MigrationRunner {
    static let finishedJobMemory: Duration = .seconds(600)
    static let progressInterval: Duration = .milliseconds(500)

    /// The controller's own connection: progress, abort, save and restore go through it.
    private let hypervisor: any Hypervisor
    private let settings: LocalControllerSettings
    private let log: Logger
    /// By migration id.
    private var jobs: [String: MigrationJob] = [:]
    /// Whoever waits for a migration to end, by migration id.
    private var waiters: [String: [UUID: CheckedContinuation<Void, Never>]] = [:]
    /// Opening a connection is on a live migration's critical path: one is opened ahead of the next.
    private var spareConnection: (any Hypervisor)?

    init(hypervisor: any Hypervisor, settings: LocalControllerSettings, log: Logger) {
        self.hypervisor = hypervisor
        self.settings = settings
        self.log = log
    }

    private var isTestDriver: Bool { HypervisorURI.isTestDriver(hypervisor.uri) }

    /// Refuses while `vm` has an unfinished migration from this host.
    func refuseIfMigrating(_ vm: String) throws(DozeError) {
        if let job = jobs.values.first(where: { $0.status.vm == vm && !$0.status.state.isFinal }) {
            throw DozeError(.conflict, "VM '\(vm)' is migrating (migration \(job.status.id)); wait for it to end or abort it")
        }
    }

    // MARK: - Starting

    /// Starts a migration of a VM of `controller` and returns at once; `status(id:wait:)` follows it.
    func start(_ command: LocalMigrationCommand, from controller: LocalController) async throws(DozeError) -> LocalMigrationStatus {
        let vm = command.vm
        if let existing = jobs[command.id] { return existing.status }   // asked again by a new leader
        let record = try await controller.current(vm)
        try await controller.refuseWhileMigrating(vm)
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
        let volumes = record.metadata.volumes
        let hold = IncomingMigration(id: command.id, vm: vm, vcpus: record.info.vcpus,
                                     memoryMiB: HostUsage.memoryMiB(fromKiB: record.info.memoryKiB),
                                     networks: record.metadata.networks.isEmpty ? nil : record.metadata.networks,
                                     volumes: volumes.isEmpty ? nil : volumes.map(\.encoded))
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
            await Self.cancelIncoming(at: destination, command)
            throw DozeError(.badRequest, "offline migration (save and restore) is only offered between test-driver hosts; use mode live or auto")
        case ("live", false):
            await Self.cancelIncoming(at: destination, command)
            throw DozeError(.unsupported, "libvirt's test driver cannot migrate live; use mode auto or offline to move '\(vm)' by save and restore")
        case (_, true): mode = "live"
        default: mode = "offline"
        }
        if mode == "live", target.migrationURI == nil {
            await Self.cancelIncoming(at: destination, command)
            throw DozeError(.unavailable, "local controller \(command.destinationId) has no --migration-uri, so its libvirt daemon cannot be reached for a live migration")
        }
        let status = LocalMigrationStatus(id: command.id, vm: vm, mode: mode, state: .running, progress: MigrationProgress())
        jobs[command.id] = MigrationJob(status: status)
        log.info("migration started", metadata: ["doze/vm": "\(vm)", "doze/migration": "\(command.id)", "doze/mode": "\(mode)",
                                                  "doze/to": "\(command.destinationId)"])
        Task {
            if mode == "live" {
                await self.runLive(command, destination: destination, uri: target.migrationURI!, volumes: volumes,
                                   volumePaths: target.volumePaths ?? [:], from: controller)
            } else {
                await self.runOffline(command, destination: destination, volumes: volumes, from: controller)
            }
        }
        return status
    }

    private static func cancelIncoming(at destination: Endpoint, _ command: LocalMigrationCommand) async {
        _ = try? await PeerClient(timeout: .seconds(5)).send(.POST, destination, "/localcontroller?cancelIncomingMigration",
                                                             body: IncomingMigration(id: command.id, vm: command.vm, vcpus: 0, memoryMiB: 0))
    }

    // MARK: - Live

    /// `volumes`: the VM's Doze volumes, which the destination has created (at `volumePaths`, by file name): the
    /// hosts share no storage, so libvirt copies them (only the overlay's top layer: the image is on both hosts).
    private func runLive(_ command: LocalMigrationCommand, destination: Endpoint, uri: String, volumes: [VMVolume],
                         volumePaths: [String: String], from controller: LocalController) async {
        let vm = command.vm
        var parameters = LiveMigrationParameters(destinationURI: uri)
        parameters.bandwidthMiBs = command.options.bandwidthMiBs ?? 0
        parameters.maxDowntimeMs = command.options.maxDowntimeMs
        let convergence = command.options.convergence ?? .autoConverge
        parameters.autoConverge = convergence == .autoConverge
        parameters.postCopy = convergence == .postCopy
        parameters.copyStorage = command.options.copyStorage ?? false
        if !volumes.isEmpty {
            parameters.copyStorage = true
            parameters.incrementalStorage = true
            do {
                parameters.destinationXML = VMVolume.retargeting(try await hypervisor.migratableXML(.name(vm)), paths: volumePaths)
            } catch {
                await Self.cancelIncoming(at: destination, command)
                finish(command.id, .failed, error: "cannot read the definition of '\(vm)' for its destination: \(error.message)")
                return
            }
        }
        // The migration call blocks its connection's thread for the whole move: it gets a connection of its own,
        // and the controller's connection stays free for progress, abort and everything else.
        let connection: any Hypervisor
        if let spare = spareConnection {
            spareConnection = nil
            connection = spare
        } else {
            do { connection = try await settings.openHypervisor(settings.hypervisorURI) } catch {
                await Self.cancelIncoming(at: destination, command)
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
            await Self.cancelIncoming(at: destination, command)
            await keepRunningHere(vm, on: controller)
            let aborted = jobs[command.id]?.abortRequested == true
            finish(command.id, aborted ? .aborted : .failed, error: aborted ? "aborted on request; '\(vm)' keeps running here" : failure.message)
            return
        }
        await completeOnSource(command, destination: destination, volumes: volumes, from: controller)
    }

    /// Opens the connection the next live migration will use, unless one is ready (real daemons only).
    func prepareSpareConnection() async {
        guard !isTestDriver, spareConnection == nil,
              let connection = try? await settings.openHypervisor(settings.hypervisorURI) else { return }
        if spareConnection == nil { spareConnection = connection } else { await connection.close() }
    }

    /// Job statistics every `progressInterval` while the migration runs; switches to post-copy when asked.
    private func watchProgress(_ command: LocalMigrationCommand) async {
        var switched = false
        while !Task.isCancelled {
            if let stats = try? await hypervisor.jobStats(.name(command.vm), completed: false) {
                jobs[command.id]?.status.progress = MigrationProgress(stats)
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

    /// After a failed move the guest must run here as before: libvirt resumes it, and if it did not, we do.
    private func keepRunningHere(_ vm: String, on controller: LocalController) async {
        guard let record = try? await controller.refresh(vm) else { return }
        if record.info.state == .paused {
            do { try await hypervisor.resume(.name(vm)) } catch {
                log.error("a failed migration left the guest paused and it could not be resumed", metadata: ["doze/vm": "\(vm)", "error": "\(error.message)"])
            }
            _ = try? await controller.refresh(vm)
        }
    }

    /// The VM now runs on the destination: the destination adopts it (and reports libvirt's final figures); here it is gone.
    private func completeOnSource(_ command: LocalMigrationCommand, destination: Endpoint, volumes: [VMVolume],
                                  from controller: LocalController) async {
        let vm = command.vm
        var finalProgress = jobs[command.id]?.status.progress
        do {
            let arrived = try await PeerClient(timeout: .seconds(30)).call(
                .POST, destination, "/localcontroller?finishIncomingMigration",
                body: IncomingMigration(id: command.id, vm: vm, vcpus: 0, memoryMiB: 0), as: LocalMigrationStatus.self)
            if let reported = arrived.progress { finalProgress = reported }
        } catch {
            log.warning("the destination did not confirm the migrated VM; its heartbeat will", metadata: ["doze/vm": "\(vm)", "error": "\(error)"])
        }
        await controller.forget(vm)
        // The disks were copied: this host's volumes of the VM go.
        await controller.deleteVolumes(volumes, of: vm)
        jobs[command.id]?.status.progress = finalProgress
        finish(command.id, .completed, error: nil)
    }

    private func finish(_ id: String, _ state: MigrationState, error: String?) {
        guard var job = jobs[id] else { return }
        job.status.state = state
        job.status.error = error
        job.finishedAt = .now
        jobs[id] = job
        for waiter in (waiters.removeValue(forKey: id) ?? [:]).values { waiter.resume() }
        log.info("migration ended", metadata: ["doze/vm": "\(job.status.vm)", "doze/migration": "\(id)", "doze/state": "\(state.rawValue)",
                                                "error": "\(error ?? "")"])
        let now = ContinuousClock.now
        for (key, ended) in jobs where ended.finishedAt.map({ now - $0 > Self.finishedJobMemory }) == true { jobs[key] = nil }
    }

    // MARK: - Offline

    /// Save here, restore there (test-driver hosts). The saved image travels in the request: hosts share no disk.
    private func runOffline(_ command: LocalMigrationCommand, destination: Endpoint, volumes: [VMVolume],
                            from controller: LocalController) async {
        let vm = command.vm
        let started = ContinuousClock.now
        let directory = settings.stateDirectory + "/migrations"
        let path = "\(directory)/\(command.id).save"
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try await hypervisor.save(.name(vm), to: path)
        } catch {
            await Self.cancelIncoming(at: destination, command)
            await keepRunningHere(vm, on: controller)
            finish(command.id, .failed, error: "save of '\(vm)' failed: \(error)")
            return
        }
        _ = try? await controller.refresh(vm)
        func restoreHere(_ state: MigrationState, _ why: String) async {
            do {
                _ = try await hypervisor.restore(from: path)
                _ = try? await controller.refresh(vm)
            } catch {
                log.error("could not restore the VM after a failed offline migration", metadata: ["doze/vm": "\(vm)", "error": "\(error.message)"])
            }
            finish(command.id, state, error: why)
        }
        if jobs[command.id]?.abortRequested == true {
            await Self.cancelIncoming(at: destination, command)
            await restoreHere(.aborted, "aborted on request; '\(vm)' keeps running here")
            return
        }
        guard let image = FileManager.default.contents(atPath: path) else {
            await Self.cancelIncoming(at: destination, command)
            await restoreHere(.failed, "the saved image of '\(vm)' could not be read")
            return
        }
        do {
            _ = try await PeerClient(timeout: .seconds(60)).call(
                .POST, destination, "/localcontroller?restoreMigratedVirtualMachine",
                body: OfflineMigrationImage(id: command.id, vm: vm, image: image), as: LocalMigrationStatus.self)
        } catch {
            await Self.cancelIncoming(at: destination, command)
            await restoreHere(.failed, remoteError(error, "the destination did not restore '\(vm)'").message)
            return
        }
        // Moved: the shut-off definition left here goes.
        try? await hypervisor.undefine(.name(vm))
        await controller.forget(vm)
        await controller.deleteVolumes(volumes, of: vm)
        let elapsed = started.duration(to: .now)
        jobs[command.id]?.status.progress = MigrationProgress(
            elapsedMs: UInt64(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000),
            dataTotal: UInt64(image.count), dataProcessed: UInt64(image.count))
        finish(command.id, .completed, error: nil)
    }

    // MARK: - Following and aborting

    /// The migration's state; with `wait`, returns as soon as it is final or after `wait`.
    func status(id: String, wait: Duration?) async throws(DozeError) -> LocalMigrationStatus {
        guard jobs[id] != nil else { throw DozeError(.notFound, "no migration '\(id)' on this host") }
        if let wait, jobs[id]?.status.state.isFinal == false {
            // Woken the moment the migration ends (`finish`), or by the timer.
            let token = UUID()
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                waiters[id, default: [:]][token] = continuation
                Task {
                    try? await Task.sleep(for: wait)
                    self.timeOutWaiter(id, token)
                }
            }
        }
        guard let job = jobs[id] else { throw DozeError(.notFound, "no migration '\(id)' on this host") }
        return job.status
    }

    private func timeOutWaiter(_ id: String, _ token: UUID) {
        waiters[id]?.removeValue(forKey: token)?.resume()
    }

    /// Aborts a running migration; the VM keeps running here.
    func abort(id: String) async throws(DozeError) -> LocalMigrationStatus {
        guard let job = jobs[id] else { throw DozeError(.notFound, "no migration '\(id)' on this host") }
        guard !job.status.state.isFinal else { return job.status }
        jobs[id]?.abortRequested = true
        if job.status.mode == "live" {
            do { try await hypervisor.abortJob(.name(job.status.vm)) } catch {
                // The job may have just ended; its final state says what happened.
                log.info("abort found no job to stop", metadata: ["doze/migration": "\(id)", "error": "\(error.message)"])
            }
        }
        return try await status(id: id, wait: .seconds(30))
    }
}

extension MigrationProgress {
    /// libvirt's job statistics as the migration API reports them.
    init(_ stats: JobStats) {
        self.init(elapsedMs: stats.elapsedMs, dataTotal: stats.dataTotal, dataProcessed: stats.dataProcessed,
                  dataRemaining: stats.dataRemaining, memoryBytesPerSecond: stats.memoryBytesPerSecond,
                  iteration: stats.iteration, downtimeMs: stats.downtimeMs)
    }
}
