import ClusterAPI
import ClusterCore
import ClusterTransport
import ClusterWire
import Foundation
import Logging
import NIOHTTP1

/// The leader's migrations: checks a request against the cluster's books, admits it through `MigrationBook`
/// (one move per VM, a per-host limit, room on the destination), has the source controller run it, follows it to
/// its end and then puts the books right everywhere: managers, the leader's view and the VM's task record.
/// Snooze answered `true` before anything happened and never tracked the outcome.
actor MigrationCoordinator {
    typealias Managers = @Sendable () async -> [NodeID: GroupLeaderState.ManagerRecord]
    typealias Moved = @Sendable (VirtualMachineMove) async -> Void

    let managers: Managers
    let submissions: SubmissionCoordinator
    /// Tells the leader's own view (and through it the managers) that a VM moved.
    let moved: Moved
    let peers = PeerClient(timeout: .seconds(15))
    let log: Logger
    let metrics: NodeMetrics?
    private let clock = ContinuousClock()
    private let started: ContinuousClock.Instant
    private var book: MigrationBook
    private var records: [String: MigrationRecord] = [:]
    private var commands: [String: LocalMigrationCommand] = [:]
    /// Hosts drained through this leader, as a target exclusion until their heartbeats say so themselves.
    private var drained: Set<NodeID> = []
    private var active = true
    /// Whoever waits for a migration to end (`GET …?wait=`), by migration id.
    private var waiters: [String: [UUID: CheckedContinuation<Void, Never>]] = [:]
    static let keepFinished: Duration = .seconds(3600)

    let store: (any ClusterRecordStore)?

    init(limitPerHost: Int, submissions: SubmissionCoordinator, store: (any ClusterRecordStore)?, logger: Logger,
         metrics: NodeMetrics? = nil, managers: @escaping Managers, moved: @escaping Moved) {
        self.metrics = metrics
        self.store = store
        self.book = MigrationBook(limitPerHost: limitPerHost)
        self.submissions = submissions
        self.managers = managers
        self.moved = moved
        self.log = logger
        self.started = clock.now
    }

    var now: Duration { started.duration(to: clock.now) }
    static var wallMillis: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    func stop() { active = false }

    /// Takes over the migrations an earlier leader recorded: running ones are followed to their end on their
    /// source controller (which runs them whatever happens to the leader); queued ones never started.
    func load() async {
        guard let store else { return }
        let earlier: [MigrationRecord]
        do { earlier = try await store.loadMigrations() } catch {
            log.error("cannot read the migration records", metadata: ["error": "\(error)"])
            return
        }
        for record in earlier where records[record.id] == nil {
            records[record.id] = record
            switch record.state {
            case .running:
                _ = book.admit(id: record.id, vm: record.vm, source: record.source.localControllerId,
                               destination: record.destination.localControllerId, demand: HostUsage(), queue: true, now: now)
                let source = Endpoint(host: record.source.address.address, port: record.source.address.port)
                Task { await self.follow(record.id, source: source) }
            case .queued:
                _ = book.admit(id: record.id, vm: record.vm, source: record.source.localControllerId,
                               destination: record.destination.localControllerId, demand: HostUsage(), queue: true, now: now)
                end(record.id, .failed, error: "the group leader changed before this migration started; ask again", progress: nil)
            default:
                _ = book.admit(id: record.id, vm: record.vm, source: record.source.localControllerId,
                               destination: record.destination.localControllerId, demand: HostUsage(), queue: true, now: now)
                _ = book.finish(record.id, now: now)
            }
        }
        if !earlier.isEmpty { log.info("migration records read back", metadata: ["doze/migrations": "\(earlier.count)"]) }
    }

    private func persist(_ id: String) {
        guard active, let record = records[id] else { return }
        do { try store?.saveMigration(record) } catch {
            log.error("cannot record a migration", metadata: ["doze/migration": "\(id)", "error": "\(error)"])
        }
    }

    struct Host {
        var info: ControllerInfo
        var manager: ManagerInfo
        var draining: Bool
        var endpoint: MigrationEndpoint {
            MigrationEndpoint(localControllerId: info.id, address: NetworkAddress(address: info.control.host, port: info.control.port),
                              groupManagerId: manager.id)
        }
    }

    private func hosts(_ current: [NodeID: GroupLeaderState.ManagerRecord]) -> [NodeID: Host] {
        var out: [NodeID: Host] = [:]
        for record in current.values {
            for controller in record.controllers {
                out[controller.id] = Host(info: controller, manager: record.info, draining: controller.draining == true || drained.contains(controller.id))
            }
        }
        return out
    }

    /// Room a host has for more VMs: its quota less what its VMs ask for (a controller's heartbeat counts the room
    /// it holds for VMs on their way in) and what queued migrations will ask of it. A precheck: the destination
    /// itself admits or refuses each incoming VM against its quota.
    private func free(_ host: Host) -> HostUsage {
        let summary = host.info.summary
        let queued = book.entries.values.filter { $0.phase == .queued && $0.destination == host.info.id }.reduce(HostUsage()) { $0 + $1.demand }
        return summary.free - queued
    }

    // MARK: - Starting

    /// Checks and admits a migration and has its source start it. Refusals are errors with nothing moved;
    /// with `queue`, a migration over the per-host limit waits for a slot instead (drains).
    func migrate(_ request: MigrationSubmission, queue: Bool = false, drain: String? = nil,
                 knownSource: NodeID? = nil, reason: String? = nil) async throws(DozeError) -> MigrationRecord {
        guard active else { throw DozeError(.unavailable, "this node is no longer the group leader") }
        let vm = request.vm.trimmingCharacters(in: .whitespacesAndNewlines)
        let to = request.to.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !vm.isEmpty else { throw DozeError(.badRequest, "give the VM to migrate (\"vm\")") }
        guard !to.isEmpty else { throw DozeError(.badRequest, "give the destination local controller (\"to\")") }
        let options = request.options ?? MigrationOptions()
        if let mode = options.mode, !MigrationOptions.modes.contains(mode) {
            throw DozeError(.badRequest, "mode must be one of \(MigrationOptions.modes.joined(separator: ", ")), got '\(mode)'")
        }
        if let postCopy = options.postCopyAfterSeconds, !(postCopy >= 0 && postCopy <= 3600) {
            throw DozeError(.badRequest, "postCopyAfterSeconds must be from 0 to 3600")
        }
        // A drain knows where its VMs are (their host listed them); others ask the cluster's books.
        let sourceID: NodeID
        if let knownSource { sourceID = knownSource } else { sourceID = try await submissions.discover(vm).localControllerId }
        let all = hosts(await managers())
        guard let destination = all[to] else {
            throw DozeError(.notFound, "no local controller '\(to)' in the cluster (see doze host list)")
        }
        guard let source = all[sourceID] else {
            throw DozeError(.unavailable, "VM '\(vm)' is on local controller \(sourceID), which is between group managers; retry in a moment")
        }
        guard source.info.id != destination.info.id else {
            throw DozeError(.conflict, "VM '\(vm)' already runs on local controller \(to)")
        }
        guard !destination.draining else {
            throw DozeError(.conflict, "local controller \(to) is drained and takes no VMs (doze host undrain \(to))")
        }
        if let other = book.active(vm: vm) {
            throw DozeError(.conflict, "VM '\(vm)' is already migrating (migration \(other.id))")
        }
        // What the VM needs, from its controller: a suspended or stopped VM is refused there too, but say it here.
        let meta: VirtualMachineMetaData
        do {
            meta = try await peers.call(.POST, source.info.control, "/localcontroller?getVirtualMachineMetaData", body: vm,
                                        as: VirtualMachineMetaData.self)
        } catch {
            throw remoteError(error, "local controller \(source.info.id) did not answer")
        }
        switch meta.status {
        case .running: break
        case .paused: throw DozeError(.conflict, "VM '\(vm)' is suspended; resume it before migrating")
        default: throw DozeError(.conflict, "VM '\(vm)' is \(meta.status.rawValue.lowercased()); only a running VM can be migrated")
        }
        let demand = meta.demand
        let room = free(destination)
        guard room.vcpus >= demand.vcpus, room.memoryMiB >= demand.memoryMiB else {
            throw DozeError(.quotaExceeded, "local controller \(to) has no room for '\(vm)' (\(demand.vcpus) vCPUs, \(demand.memoryMiB) MiB): "
                            + "\(max(0, room.vcpus)) vCPUs and \(max(0, room.memoryMiB)) MiB free")
        }
        let id = UUID().uuidString.lowercased()
        let phase: MigrationBook.Phase
        switch book.admit(id: id, vm: vm, source: source.info.id, destination: to, demand: demand, queue: queue, now: now) {
        case .success(let admitted): phase = admitted
        case .failure(.sameHost): throw DozeError(.conflict, "VM '\(vm)' already runs on local controller \(to)")
        case .failure(.alreadyMigrating(_, let other)): throw DozeError(.conflict, "VM '\(vm)' is already migrating (migration \(other))")
        case .failure(.hostBusy(let host, let limit)):
            throw DozeError(.conflict, "local controller \(host) already takes part in \(limit) migrations (the per-host limit); retry when one ends")
        case .failure(.noSuchMigration(let migration)): throw DozeError(.notFound, "no migration \(migration)")
        }
        var record = MigrationRecord(id: id, vm: vm, source: source.endpoint, destination: destination.endpoint,
                                     mode: options.mode ?? "auto", state: phase == .queued ? .queued : .running,
                                     startedAt: Self.wallMillis, options: options, drain: drain)
        record.reason = reason
        records[id] = record
        persist(id)
        commands[id] = LocalMigrationCommand(id: id, vm: vm, destinationId: to, destination: destination.endpoint.address, options: options)
        log.info("migration accepted", metadata: ["doze/vm": "\(vm)", "doze/migration": "\(id)", "doze/from": "\(source.info.id)", "doze/to": "\(to)",
                                                   "doze/queued": "\(phase == .queued)"])
        guard phase == .running else { return record }
        do {
            record = try await launch(id)
        } catch {
            // Refused by a controller before anything moved: the caller gets the refusal itself.
            end(id, .failed, error: error.message, progress: nil)
            throw error
        }
        return record
    }

    /// A queued migration whose hosts now have a slot; a refusal is its outcome.
    private func launchQueued(_ id: String) async {
        do { _ = try await launch(id) } catch { end(id, .failed, error: error.message, progress: nil) }
    }

    /// Has the source controller start the migration, then follows it in the background.
    private func launch(_ id: String) async throws(DozeError) -> MigrationRecord {
        guard let command = commands[id], var record = records[id] else { throw DozeError(.notFound, "no migration \(id)") }
        let source = Endpoint(host: record.source.address.address, port: record.source.address.port)
        let status: LocalMigrationStatus
        do {
            status = try await peers.call(.POST, source, "/localcontroller?migrateVirtualMachine", body: command, as: LocalMigrationStatus.self)
        } catch {
            throw remoteError(error, "local controller \(record.source.localControllerId) did not start the migration")
        }
        record.mode = status.mode
        record.state = .running
        record.progress = status.progress
        records[id] = record
        persist(id)
        Task { await self.follow(id, source: source) }
        return record
    }

    /// Long-polls the source until the migration is over.
    private func follow(_ id: String, source: Endpoint) async {
        var failures = 0
        while active, let record = records[id], !record.state.isFinal {
            do {
                let status = try await peers.call(.GET, source, "/localcontroller?getMigration&id=\(id)&wait=20", as: LocalMigrationStatus.self,
                                                  timeout: .seconds(30))
                failures = 0
                records[id]?.progress = status.progress ?? records[id]?.progress
                if status.state.isFinal {
                    await conclude(id, status)
                    return
                }
            } catch {
                failures += 1
                // A source that stays unreachable for about a minute has lost the migration with it.
                if failures >= 30 {
                    end(id, .failed, error: "local controller \(record.source.localControllerId) stopped answering about the migration: \(error)",
                        progress: nil)
                    return
                }
                try? await Task.sleep(for: .seconds(2))
            }
        }
    }

    private func conclude(_ id: String, _ status: LocalMigrationStatus) async {
        guard let record = records[id] else { return }
        if status.state == .completed {
            let demand = book.entries[id]?.demand ?? HostUsage()
            let move = VirtualMachineMove(vm: record.vm, from: record.source.localControllerId, to: record.destination.localControllerId,
                                          vcpus: demand.vcpus, memoryMiB: demand.memoryMiB)
            await moved(move)
            let current = await managers()
            if let manager = current.values.first(where: { $0.controllers.contains { $0.id == record.destination.localControllerId } })?.info {
                records[id]?.destination.groupManagerId = manager.id
                let gm = NetworkAddress(address: manager.control.host, port: manager.control.port)
                await submissions.relocate(record.vm, to: VirtualMachineLocation(
                    virtualMachineId: record.vm, localControllerId: record.destination.localControllerId,
                    localControllerControlDataAddress: record.destination.address, groupManagerId: manager.id, groupManagerControlDataAddress: gm))
            }
        }
        end(id, status.state, error: status.error, progress: status.progress)
    }

    private func end(_ id: String, _ state: MigrationState, error: String?, progress: MigrationProgress?) {
        guard var record = records[id] else { return }
        record.state = state
        record.error = error
        if let progress { record.progress = progress }
        record.finishedAt = Self.wallMillis
        record.durationMs = UInt64(max(0, record.finishedAt! - record.startedAt))
        records[id] = record
        commands[id] = nil
        persist(id)
        for waiter in (waiters.removeValue(forKey: id) ?? [:]).values { waiter.resume() }
        metrics?.migrationEnded(state: state.rawValue, after: record.durationMs.map { .milliseconds(Int64($0)) })
        log.info("migration ended", metadata: ["doze/vm": "\(record.vm)", "doze/migration": "\(id)", "doze/state": "\(state.rawValue)",
                                                "doze/ms": "\(record.durationMs ?? 0)", "error": "\(error ?? "")"])
        for next in book.finish(id, now: now) {
            Task { await self.launchQueued(next) }
        }
        book.prune(now: now, keep: Self.keepFinished)
        let kept = Set(book.entries.keys)
        for key in records.keys where !kept.contains(key) {
            records[key] = nil
            try? store?.deleteMigration(key)
        }
    }

    // MARK: - Reading and aborting

    /// A migration, with fresh progress from its source while it runs; `wait` returns early once it is final.
    func record(_ id: String, wait: Duration = .zero) async throws(DozeError) -> MigrationRecord {
        guard var record = records[id] else { throw DozeError(.notFound, "no migration '\(id)' (unknown, or forgotten an hour after it ended)") }
        if wait > .zero {
            if !record.state.isFinal {
                let token = UUID()
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    waiters[id, default: [:]][token] = continuation
                    Task {
                        try? await Task.sleep(for: wait)
                        self.timeOut(id, token)
                    }
                }
            }
            return records[id] ?? record
        }
        if record.state == .running {
            let source = Endpoint(host: record.source.address.address, port: record.source.address.port)
            if let status = try? await peers.call(.GET, source, "/localcontroller?getMigration&id=\(id)", as: LocalMigrationStatus.self,
                                                  timeout: .seconds(3)), let progress = status.progress {
                records[id]?.progress = progress
                record = records[id] ?? record
            }
        }
        return record
    }

    private func timeOut(_ id: String, _ token: UUID) {
        waiters[id]?.removeValue(forKey: token)?.resume()
    }

    func list() -> MigrationList {
        MigrationList(migrations: records.values.sorted { ($0.startedAt, $0.id) > ($1.startedAt, $1.id) })
    }

    /// Aborts a queued or running migration; the VM stays where it is.
    func abort(_ id: String) async throws(DozeError) -> MigrationRecord {
        guard let record = records[id] else { throw DozeError(.notFound, "no migration '\(id)'") }
        switch record.state {
        case .queued:
            end(id, .aborted, error: "aborted on request before it started", progress: nil)
        case .running:
            let source = Endpoint(host: record.source.address.address, port: record.source.address.port)
            let status: LocalMigrationStatus
            do {
                status = try await peers.call(.POST, source, "/localcontroller?abortMigration&id=\(id)", as: LocalMigrationStatus.self,
                                              timeout: .seconds(40))
            } catch {
                throw remoteError(error, "local controller \(record.source.localControllerId) did not abort the migration")
            }
            if status.state.isFinal, records[id]?.state.isFinal == false { await conclude(id, status) }
        default:
            break   // already over: its outcome stands
        }
        return records[id] ?? record
    }

    /// VMs with a migration queued or running: the rebalancer leaves them alone.
    func migratingVMs() -> Set<String> {
        Set(book.entries.values.filter { $0.phase != .finished }.map(\.vm))
    }

    /// Hosts drained through this leader whose heartbeats may not say so yet.
    func drainedHosts() -> Set<NodeID> { drained }

    // MARK: - Hosts

    func hostList() async -> HostList {
        let all = hosts(await managers())
        return HostList(hosts: all.values.map { host in
            let summary = host.info.summary
            return HostEntry(id: host.info.id, address: NetworkAddress(address: host.info.control.host, port: host.info.control.port),
                             groupManagerId: host.manager.id, draining: host.draining, vms: host.info.vms.sorted(),
                             vcpus: summary.total.vcpus, vcpusRequested: summary.requested.vcpus,
                             memoryMiB: summary.total.memoryKiB / 1024, memoryMiBRequested: summary.requested.memoryKiB / 1024,
                             migrations: book.running(on: host.info.id))
        }.sorted { $0.id < $1.id })
    }

    /// Sets a host's drained flag without moving anything (the energy saver keeps an empty host that way while it
    /// powers off, and opens it again once woken).
    func markDraining(_ id: NodeID, _ draining: Bool) async throws(DozeError) {
        guard let host = hosts(await managers())[id] else { throw DozeError(.notFound, "no local controller '\(id)' in the cluster") }
        try await setDraining(host, draining)
    }

    /// Hosts a queued or running migration leaves from or goes to.
    func hostsMigrating() -> Set<NodeID> {
        Set(book.entries.values.filter { $0.phase != .finished }.flatMap { [$0.source, $0.destination] })
    }

    private func setDraining(_ host: Host, _ draining: Bool) async throws(DozeError) {
        do {
            _ = try await peers.call(.POST, host.info.control, "/localcontroller?setDraining", body: draining ? "true" : "false", as: String.self)
        } catch {
            throw remoteError(error, "local controller \(host.info.id) did not answer")
        }
        if draining { drained.insert(host.info.id) } else { drained.remove(host.info.id) }
        // Return once the heartbeats carry it, so managers' placement and the leader's dispatch both know (bounded).
        let deadline = ContinuousClock.now + .seconds(3)
        while ContinuousClock.now < deadline {
            let reported = await managers().values.lazy.flatMap(\.controllers).first { $0.id == host.info.id }?.draining == true
            if reported == draining { return }
            try? await Task.sleep(for: .milliseconds(20))
        }
        log.warning("the heartbeats did not report the host's new scheduling in time", metadata: ["doze/lc": "\(host.info.id)"])
    }

    /// Marks a host unschedulable and live-migrates every running VM off it, to hosts placement chooses.
    func drain(_ id: String, options: MigrationOptions?) async throws(DozeError) -> DrainReport {
        let all = hosts(await managers())
        guard let host = all[id] else { throw DozeError(.notFound, "no local controller '\(id)' in the cluster (see doze host list)") }
        try await setDraining(host, true)
        let vms: [VirtualMachineMetaData]
        do {
            vms = try await peers.call(.POST, host.info.control, "/localcontroller?getVirtualMachines", body: "0", as: [VirtualMachineMetaData].self)
        } catch {
            throw remoteError(error, "local controller \(id) did not list its VMs")
        }
        var placement = Placement(policy: .leastLoaded)
        let candidates = all.values.filter { $0.info.id != id && !$0.draining }.map { PlacementCandidate(id: $0.info.id, free: free($0)) }
        var started: [MigrationRecord] = []
        var unplaced: [String: String] = [:]
        for meta in vms.sorted(by: { $0.virtualMachineLocation.virtualMachineId < $1.virtualMachineLocation.virtualMachineId }) {
            let vm = meta.virtualMachineLocation.virtualMachineId
            if let moving = book.active(vm: vm) {
                if let existing = records[moving.id] { started.append(existing) }
                continue
            }
            guard meta.status == .running else {
                unplaced[vm] = "\(meta.status.rawValue.lowercased()): only running VMs are migrated; move or destroy it yourself"
                continue
            }
            let demand = meta.demand
            switch placement.place(vm, demand: demand, among: candidates) {
            case .failure:
                unplaced[vm] = "no other host has room for \(demand.vcpus) vCPUs and \(demand.memoryMiB) MiB"
            case .success(let target):
                do {
                    started.append(try await migrate(MigrationSubmission(vm: vm, to: target, options: options), queue: true, drain: id, knownSource: id))
                } catch {
                    unplaced[vm] = error.message
                }
            }
        }
        log.notice("draining a host", metadata: ["doze/lc": "\(id)", "doze/migrations": "\(started.count)", "doze/unplaced": "\(unplaced.count)"])
        return DrainReport(host: id, draining: true, migrations: started, unplaced: unplaced)
    }

    func undrain(_ id: String) async throws(DozeError) -> DrainReport {
        let all = hosts(await managers())
        guard let host = all[id] else { throw DozeError(.notFound, "no local controller '\(id)' in the cluster (see doze host list)") }
        try await setDraining(host, false)
        return DrainReport(host: id, draining: false, migrations: [], unplaced: [:])
    }
}
