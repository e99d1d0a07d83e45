import ClusterCore
import ClusterTransport
import ClusterWire
import Foundation
import Hypervisor
import Logging
import NIOHTTP1
import Synchronization

/// One VM of the failover books as the cluster records keep it (one entry per VM, so a change writes one small
/// value): its phase, its template if it is HA (a task record expires; a VM's protection must not), and the
/// address of the host it is on or was last on (a new leader may have to fence a host it never saw).
struct FailoverEntry: Sendable, Codable, Equatable {
    var record: Failover.VMRecord
    var template: VirtualMachineTemplate?
    var hostAddress: Endpoint?
}

/// The leader's VM high availability, for one term: a thin shell around `Failover`. It feeds it the leader's
/// view on every tick and each `controllerDown`, runs the fence agent (`FenceRun`), restarts fenced HA VMs
/// through the ordinary submission path (`SubmissionCoordinator.submit`, pinned to a chosen host, so the VM keeps
/// its name, template and address), destroys stale copies fenced hosts still report, and persists the books
/// before every restart so the next leader neither forgets nor repeats one.
actor FailoverCoordinator {
    typealias Managers = @Sendable () async -> [NodeID: GroupLeaderState.ManagerRecord]

    let settings: HighAvailabilitySettings
    let submissions: SubmissionCoordinator
    let store: (any ClusterRecordStore)?
    let managers: Managers
    let peers = PeerClient(timeout: .seconds(10))
    let log: Logger
    private let clock = ContinuousClock()
    private let started: ContinuousClock.Instant
    private var failover: Failover
    private var templates: [String: VirtualMachineTemplate] = [:]
    private var hosts: [NodeID: Endpoint] = [:]
    /// Why each UNKNOWN VM is unknown (the last `.markedUnknown` for it), for the views.
    private var reasons: [String: String] = [:]
    private var loaded = false
    private var active = true
    private var dirty = false
    /// What the records hold now, by VM: only entries that changed are written.
    private var lastSaved: [String: FailoverEntry] = [:]
    /// `Failover.staleVMs` by host, refreshed after every change: the leader answers a joining controller from it
    /// without waiting for this actor (assignment stays as quick as it was).
    private nonisolated let staleByHost = Mutex<[NodeID: [String]]>([:])

    init(settings: HighAvailabilitySettings, submissions: SubmissionCoordinator, store: (any ClusterRecordStore)?,
         settleTime: Duration, logger: Logger, managers: @escaping Managers) {
        self.settings = settings
        self.submissions = submissions
        self.store = store
        self.managers = managers
        var log = logger
        log[metadataKey: "doze/service"] = "failover"
        self.log = log
        var core = Failover.Settings(settleTime: settleTime)
        if case .command = settings.fence { core.canFence = true }
        self.failover = Failover(settings: core)
        started = clock.now
    }

    var now: MonotonicTime { started.duration(to: clock.now) }

    /// Reads back an earlier leader's books. Until then the coordinator acts on nothing (a restart must not be
    /// decided on half the records).
    func load() async {
        do {
            let entries = try await store?.loadFailover() ?? []
            failover = Failover(records: entries.map(\.record), settings: failover.settings)
            for entry in entries {
                templates[entry.record.name] = entry.template
                if let address = entry.hostAddress { hosts[entry.record.host] = address }
                lastSaved[entry.record.name] = entry
            }
            refreshStale()
            let restarting = entries.filter { if case .restarting = $0.record.phase { true } else { false } }.count
            if !entries.isEmpty {
                log.notice("failover books read back", metadata: ["doze/vms": "\(entries.count)", "doze/restarting": "\(restarting)"])
            }
        } catch {
            log.error("cannot read the failover records; HA VMs of hosts that died before this leader are not restarted",
                      metadata: ["error": "\(error)"])
        }
        loaded = true
    }

    func stop() { active = false }

    // MARK: - Events from the leader

    /// A controller was declared dead: its VMs are those of its last report and those just started there that no
    /// report listed yet (a host may die within a heartbeat of a start).
    func controllerDown(_ controller: ControllerInfo) async {
        guard active, loaded else { return }
        hosts[controller.id] = controller.control
        await refreshTemplates()
        let justStarted = await submissions.recentStarts().filter { $0.value == controller.id }.keys
        apply(failover.onControllerDown(controller.id, vms: Set(controller.vms).union(justStarted),
                                        highlyAvailable: Set(templates.keys), now: now))
        persistIfDirty()
    }

    /// Templates come from the submissions' records, which expire: keep our own copy.
    private func refreshTemplates() async {
        for (name, template) in await submissions.highlyAvailableTemplates() where templates[name] != template {
            templates[name] = template
            dirty = true
        }
    }

    /// Heartbeat-paced: the view, fence and restart retries, restarts submitted earlier.
    func tick() async {
        guard active, loaded else { return }
        let current = await managers()
        var listed: [String: Set<NodeID>] = [:]
        var inView: Set<NodeID> = []
        for record in current.values {
            for controller in record.controllers {
                inView.insert(controller.id)
                if hosts[controller.id] != controller.control {
                    hosts[controller.id] = controller.control
                    dirty = true
                }
                for vm in controller.vms { listed[vm, default: []].insert(controller.id) }
            }
        }
        await refreshTemplates()
        apply(failover.onView(listed: listed, hostsInView: inView, highlyAvailable: Set(templates.keys), now: now))
        apply(failover.onTick(now: now))
        await followRestarts()
        // Forget templates of VMs that are gone (destroyed on purpose) and no submission still names.
        for name in templates.keys where failover.records[name] == nil && listed[name] == nil {
            if await submissions.pendingTask(for: name) == nil {
                templates[name] = nil
                dirty = true
            }
        }
        await submissions.holdAddresses(Set(failover.unknownVMs.map(\.name)))
        persistIfDirty()
    }

    /// Restarts whose submissions this leader follows (its own, or an earlier leader's): a failed one is retried.
    private func followRestarts() async {
        for record in failover.records.values {
            guard case .restarting(_, let task?) = record.phase else { continue }
            switch await submissions.outcome(of: record.name, in: task) {
            case .pending, .running: continue   // running: the heartbeats will list it
            case .failed(let reason): apply(failover.onRestartFailed(record.name, reason: reason, now: now))
            case .unknownTask: apply(failover.onRestartFailed(record.name, reason: "its submission \(task) is not in the records", now: now))
            }
        }
    }

    // MARK: - Queries

    /// What a re-joining controller must destroy before it reports its VMs (empty until the books are read back).
    /// HA VMs being restarted elsewhere → the host they were lost from (for the events stream).
    func restartingVMs() -> [String: NodeID] {
        var restarting: [String: NodeID] = [:]
        for record in failover.records.values { if case .restarting(let host, _) = record.phase { restarting[record.name] = host } }
        return restarting
    }

    nonisolated func staleVMs(on host: NodeID) -> [String] { staleByHost.withLock { $0[host] ?? [] } }

    private func refreshStale() {
        var byHost: [NodeID: [String]] = [:]
        for record in failover.records.values { for host in record.staleOn { byHost[host, default: []].append(record.name) } }
        for host in byHost.keys { byHost[host]!.sort() }
        staleByHost.withLock { $0 = byHost }
    }

    /// The VMs whose host is down (or that are being restarted), as the views show them: status UNKNOWN, located
    /// on the host they were last on, with why.
    func unknownVMs() async -> [VirtualMachineMetaData] {
        var unknown: [VirtualMachineMetaData] = []
        for record in failover.unknownVMs {
            var meta = VirtualMachineMetaData(location: VirtualMachineLocation(virtualMachineId: record.name), status: .unknown)
            meta.locate(onController: record.host, at: hosts[record.host].map { NetworkAddress($0) })
            meta.errorMessage = reasons[record.name] ?? "its host \(record.host) is down"
            if record.ha { meta.ha = true }
            if let template = templates[record.name] { meta.requestedCapacity = Self.demand(of: template).snoozeArray }
            meta.ipAddress = await submissions.address(of: record.name) ?? ""
            unknown.append(meta)
        }
        return unknown
    }

    /// Why a VM is UNKNOWN, or nil when it is not.
    func unknownReason(_ vm: String) -> String? {
        guard let record = failover.records[vm], !record.isRunning else { return nil }
        return reasons[vm] ?? "its host \(record.host) is down"
    }

    // MARK: - Directives

    private func apply(_ directives: [Failover.Directive]) {
        for directive in directives {
            switch directive {
            case .persist:
                dirty = true
            case .markedUnknown(let vms, let host, let reason):
                for vm in vms { reasons[vm] = reason }
                log.warning("VMs are UNKNOWN", metadata: ["doze/lc": "\(host)", "doze/vms": "\(vms.joined(separator: ","))", "reason": "\(reason)"])
            case .fence(let host, let attempt):
                guard case .command(let path) = settings.fence else { continue }
                for record in failover.records.values where record.phase == .lost(from: host) {
                    reasons[record.name] = record.ha ? "its host \(host) is down; fencing it (attempt \(attempt))" : "its host \(host) is down"
                }
                let address = hosts[host], timeout = settings.fenceTimeout, log = self.log
                log.warning("fencing a dead host", metadata: ["doze/lc": "\(host)", "attempt": "\(attempt)", "command": "\(path)"])
                Task {
                    let started = ContinuousClock.now
                    let outcome = await FenceRun.run(path, host: host, address: address, timeout: timeout)
                    let took = ContinuousClock.now - started
                    self.fenced(host, outcome, took: took)
                }
            case .restart(let vm, let avoiding):
                // The `restarting` record must be stored before the VM starts anywhere.
                Task { await self.restart(vm, avoiding: avoiding) }
            case .destroyStale(let vm, let host):
                guard let endpoint = hosts[host] else { continue }
                log.warning("a fenced host reports a stale copy of a VM restarted elsewhere; destroying it there",
                            metadata: ["doze/vm": "\(vm)", "doze/lc": "\(host)"])
                let peers = self.peers, log = self.log
                Task {
                    do {
                        _ = try await peers.call(.POST, endpoint, "/localcontroller?destroyVirtualMachine", body: vm, as: String.self)
                    } catch {
                        log.error("cannot destroy a stale copy", metadata: ["doze/vm": "\(vm)", "doze/lc": "\(host)", "error": "\(error)"])
                    }
                }
            }
        }
    }

    private func fenced(_ host: NodeID, _ outcome: FenceRun.Outcome, took: Duration) {
        guard active else { return }
        let output = outcome.output.trimmingCharacters(in: .whitespacesAndNewlines)
        if outcome.fenced {
            log.notice("host fenced", metadata: ["doze/lc": "\(host)", "took": "\(took)", "output": "\(output)"])
            apply(failover.onFenceSucceeded(host, now: now))
        } else {
            let error = outcome.error ?? "failed"
            log.error("fencing failed; its VMs are not restarted", metadata: ["doze/lc": "\(host)", "error": "\(error)", "output": "\(output)"])
            apply(failover.onFenceFailed(host, error: error, now: now))
        }
        persistIfDirty()
    }

    /// Submits a fenced VM again, pinned to the roomiest host outside `avoiding`, keeping its name, template and
    /// address. The books say `restarting` (stored) before the submission exists.
    private func restart(_ vm: String, avoiding: Set<NodeID>) async {
        guard active else { return }
        do {
            try save()
            try await store?.flush()
        } catch {
            apply(failover.onRestartFailed(vm, reason: "cannot record the restart: \(error)", now: now))
            return
        }
        // An earlier leader may have submitted it already: follow that submission instead of a second one.
        if let task = await submissions.pendingTask(for: vm) {
            apply(failover.onRestartSubmitted(vm, task: task))
            persistIfDirty()
            return
        }
        guard var template = templates[vm] else {
            apply(failover.onRestartFailed(vm, reason: "no template recorded for it", now: now))
            return
        }
        guard let target = await target(for: template, avoiding: avoiding) else {
            apply(failover.onRestartFailed(vm, reason: "no other host has room for it", now: now))
            persistIfDirty()
            return
        }
        template.hostId = target
        template.ha = true
        do {
            let task = try await submissions.submit(VirtualClusterSubmissionRequest(virtualMachineTemplates: [template]), restarting: [vm])
            log.notice("restarting an HA VM on another host", metadata: ["doze/vm": "\(vm)", "doze/lc": "\(target)", "doze/task": "\(task)"])
            apply(failover.onRestartSubmitted(vm, task: task))
        } catch {
            apply(failover.onRestartFailed(vm, reason: error.message, now: now))
        }
        persistIfDirty()
    }

    /// vCPUs and memory the template asks for (as the submission pipeline reads them).
    static func demand(of template: VirtualMachineTemplate) -> ResourceVector {
        if let xml = template.libVirtTemplate, let description = try? DomainDescription(xml: xml) {
            return ResourceVector(vcpus: Double(description.vcpus), memoryKiB: Double(description.memoryKiB))
        }
        return ResourceVector(vcpus: Double(template.vcpus ?? 1), memoryKiB: Double(template.memory ?? 131_072))
    }

    /// The open host (not draining, not avoided) with the largest free share that can take the VM.
    private func target(for template: VirtualMachineTemplate, avoiding: Set<NodeID>) async -> NodeID? {
        let demand = Self.demand(of: template)
        let candidates = await managers().values.flatMap(\.controllers).filter { controller in
            let summary = controller.summary
            return !avoiding.contains(controller.id) && controller.draining != true
                && summary.total.vcpus - summary.requested.vcpus >= demand.vcpus
                && summary.total.memoryKiB - summary.requested.memoryKiB >= demand.memoryKiB
        }
        return candidates.max { ($0.summary.freeFraction, $1.id) < ($1.summary.freeFraction, $0.id) }?.id
    }

    // MARK: - Records

    /// What outlives this leader: the HA VMs. VMs that are not HA are left out, even UNKNOWN ones: this leader shows
    /// them, a next one learns them again when their host returns. So a cluster without HA VMs writes nothing here,
    /// and a dead host's many VMs do not queue writes ahead of the submissions' records (etcd writes go one by one).
    private func entries() -> [String: FailoverEntry] {
        var entries: [String: FailoverEntry] = [:]
        for record in failover.records.values where record.ha {
            entries[record.name] = FailoverEntry(record: record, template: record.ha ? templates[record.name] : nil,
                                                 hostAddress: hosts[record.host])
        }
        return entries
    }

    /// Writes the entries that changed and removes those that went; in the order made (the store keeps it).
    private func save() throws {
        dirty = false
        refreshStale()
        let current = entries()
        for (vm, entry) in current where lastSaved[vm] != entry {
            try store?.saveFailoverEntry(entry, vm: vm)
            lastSaved[vm] = entry
        }
        for vm in lastSaved.keys where current[vm] == nil {
            try store?.saveFailoverEntry(nil, vm: vm)
            lastSaved[vm] = nil
        }
    }

    private func persistIfDirty() {
        refreshStale()
        guard dirty, active else { return }
        do { try save() } catch {
            log.error("cannot record the failover books", metadata: ["error": "\(error)"])
        }
    }
}
