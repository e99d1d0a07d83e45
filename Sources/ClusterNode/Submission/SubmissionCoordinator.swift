import ClusterAPI
import ClusterCore
import ClusterTransport
import ClusterWire
import Foundation
import Hypervisor
import Logging
import NIOHTTP1

/// The leader's submission pipeline: checks a virtual cluster, gives its VMs addresses and group managers,
/// records it (so the next leader can finish it), dispatches it, merges the managers' answers by VM id and wakes
/// whoever waits for the result. Decisions on the book are `TaskBook`'s and `Placement`'s; this actor does the IO.
actor SubmissionCoordinator {
    typealias Managers = @Sendable () async -> [NodeID: GroupLeaderState.ManagerRecord]

    let settings: SubmissionSettings
    let store: (any ClusterRecordStore)?
    let managers: Managers
    let peers = PeerClient(timeout: .seconds(30))
    let log: Logger
    /// A manager just elected waits this long for managers to report before trusting its view of the cluster.
    let settleTime: Duration
    private let clock = ContinuousClock()
    private let started: ContinuousClock.Instant
    private var book: TaskBook
    private var pool: IPPool?
    private var dispatch: Placement
    /// Dispatch reservations by VM id, until the manager's summary lists the VM.
    private var dispatchedAt: [String: Duration] = [:]
    /// When a manager answered a dispatched VM; summaries a few intervals later reflect it (listed or gone).
    private var answeredAt: [String: Duration] = [:]
    /// First time a VM holding an address was seen nowhere; its address is released after `addressGrace`.
    private var absentSince: [String: Duration] = [:]
    private var waiters: [String: [UUID: CheckedContinuation<Void, Never>]] = [:]
    /// Recently started VMs (task/VM keys: a name can be started again by a later task) the heartbeats have
    /// listed since: from then on the listings alone say whether the name is taken and where the VM is.
    private var reported: Set<String> = []
    private var active = true
    static let addressGrace: Duration = .seconds(10)
    /// How long a VM that just started keeps its name taken before heartbeats list it.
    static let reportGrace: Duration = .seconds(5)

    /// Reads back what earlier leaders recorded before the coordinator answers anything, so a task id answered
    /// before a failover is known the moment this node leads.
    init(settings: SubmissionSettings, store: (any ClusterRecordStore)?, settleTime: Duration, logger: Logger,
         managers: @escaping Managers) {
        self.settings = settings
        self.store = store
        self.managers = managers
        self.settleTime = settleTime
        self.log = logger
        self.book = TaskBook(resultTTL: settings.resultTTL)
        self.pool = nil
        self.dispatch = Placement(policy: settings.dispatch)
        self.started = clock.now
    }

    /// Reads back what earlier leaders recorded; nothing is answered before (`whenLoaded`).
    func load() async {
        var pool: IPPool?
        if let store {
            do {
                for record in try await store.loadTasks() { book.add(record) }
                pool = try await store.loadIPPool()
            } catch {
                log.error("cannot read the cluster records; earlier submissions are unknown", metadata: ["error": "\(error)"])
            }
        }
        if let subnet = settings.subnet, pool?.subnet != subnet {
            if let old = pool { log.warning("the VM subnet changed; addresses are handed out afresh", metadata: ["doze/old": "\(old.subnet)"]) }
            pool = try? IPPool(subnet: subnet)
        }
        self.pool = pool
        loaded = true
    }

    private var loaded = false

    /// Waits (bounded) until the records are read back.
    func whenLoaded() async throws(DozeError) {
        let deadline = now + .seconds(15)
        while !loaded {
            guard active, now < deadline else { throw DozeError(.unavailable, "the group leader is still reading the cluster records; retry") }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    var now: Duration { started.duration(to: clock.now) }
    static var wallMillis: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    // MARK: - Leadership

    /// Finishes the unfinished submissions of earlier leaders, once the managers have had time to join.
    func takeOver() async {
        guard (try? await whenLoaded()) != nil else { return }
        let unfinished = book.records.values.filter { !$0.isFinal }.map(\.id)
        guard !unfinished.isEmpty else { return }
        log.notice("finishing submissions of an earlier leader", metadata: ["doze/tasks": "\(unfinished.count)"])
        try? await Task.sleep(for: settleTime)   // let the managers join and report first
        for id in unfinished { Task { await self.run(id, retry: true) } }
    }

    /// Leadership lost: nothing more is written (the next leader owns the records now).
    func stop() {
        active = false
        for (_, list) in waiters { for c in list.values { c.resume() } }
        waiters = [:]
    }

    // MARK: - Submitting

    struct Prepared {
        var name: String
        var xml: String
        var demand: ResourceVector
        var template: VirtualMachineTemplate
    }

    /// Checks the whole request first: a malformed template, a bad name or a duplicate refuses the submission
    /// and creates nothing.
    func prepare(_ request: VirtualClusterSubmissionRequest, described: [Int: DomainDescription],
                 taken: [String: String]) throws(DozeError) -> [Prepared] {
        let templates = request.virtualMachineTemplates
        var prepared: [Prepared] = []
        var seen: [String: Int] = [:]
        for (i, t) in templates.enumerated() {
            let where_ = "virtualMachineTemplates[\(i)]"
            var p: Prepared
            if let xml = t.libVirtTemplate, let d = described[i] {
                p = Prepared(name: d.name, xml: xml, demand: ResourceVector(vcpus: Double(d.vcpus), memoryKiB: Double(d.memoryKiB)), template: t)
            } else {
                guard let name = t.name, !name.isEmpty else {
                    throw DozeError(.badRequest, "\(where_): give a libVirtTemplate, or a name and an imageId")
                }
                guard let image = t.imageId, !image.isEmpty else {
                    throw DozeError(.badRequest, "\(where_): VM '\(name)' has no libVirtTemplate, so it needs an imageId")
                }
                guard !image.contains("/"), !image.hasPrefix(".") else {
                    throw DozeError(.badRequest, "\(where_): imageId '\(image)' must be a file name in the hosts' image pool")
                }
                let vcpus = t.vcpus ?? 1
                let memory = t.memory ?? 131_072
                guard (1...DomainDescription.maxVCPUs).contains(vcpus) else {
                    throw DozeError(.badRequest, "\(where_): vcpus must be 1...\(DomainDescription.maxVCPUs), got \(vcpus)")
                }
                guard memory >= 1024, UInt64(memory) <= DomainDescription.maxMemoryKiB else {
                    throw DozeError(.badRequest, "\(where_): memory is in KiB, from 1024 to \(DomainDescription.maxMemoryKiB), got \(memory)")
                }
                p = Prepared(name: name, xml: "", demand: ResourceVector(vcpus: Double(vcpus), memoryKiB: Double(memory)), template: t)
            }
            do { try Validation.vmName(p.name) } catch { throw DozeError(.badRequest, "\(where_): \(error.message)") }
            do {
                try Validation.networkDemand(t.networkCapacityDemand.rxBytes, what: "networkCapacityDemand.rxBytes")
                try Validation.networkDemand(t.networkCapacityDemand.txBytes, what: "networkCapacityDemand.txBytes")
            } catch { throw DozeError(.badRequest, "\(where_): \(error.message)") }
            p.demand.rxBytes = t.networkCapacityDemand.rxBytes
            p.demand.txBytes = t.networkCapacityDemand.txBytes
            if let first = seen[p.name] {
                throw DozeError(.conflict, "VM name '\(p.name)' appears twice in the submission (templates \(first) and \(i)); names are unique")
            }
            seen[p.name] = i
            if let holder = taken[p.name] {
                throw DozeError(.conflict, "a VM named '\(p.name)' already exists (\(holder)); names are unique in the cluster")
            }
            prepared.append(p)
        }
        return prepared
    }

    /// Parses the submission's libvirt templates off the actor (a large submission must not hold up the
    /// leader's other work), refusing an empty or oversized one first. Key: the template's index.
    @concurrent nonisolated static func describeTemplates(_ request: VirtualClusterSubmissionRequest,
                                                         maxVMs: Int) async throws(DozeError) -> [Int: DomainDescription] {
        let templates = request.virtualMachineTemplates
        guard !templates.isEmpty else { throw DozeError(.badRequest, "virtualMachineTemplates is empty: nothing to start") }
        guard templates.count <= maxVMs else {
            throw DozeError(.payloadTooLarge, "\(templates.count) VMs in one submission; at most \(maxVMs)")
        }
        var described: [Int: DomainDescription] = [:]
        for (i, t) in templates.enumerated() {
            guard let xml = t.libVirtTemplate, !xml.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { continue }
            do { described[i] = try DomainDescription(xml: xml) } catch {
                throw DozeError(.badRequest, "virtualMachineTemplates[\(i)]: invalid libVirtTemplate: \(error.message)")
            }
        }
        return described
    }

    /// Names in use: VMs the heartbeats list, VMs of submissions in flight, VMs that just started. Value: where.
    func takenNames(_ managers: [NodeID: GroupLeaderState.ManagerRecord]) -> [String: String] {
        var taken: [String: String] = [:]
        for record in managers.values {
            for c in record.controllers { for vm in c.vms { taken[vm] = "on local controller \(c.id)" } }
        }
        for (vm, task) in book.pendingVMs { taken[vm] = "being started by task \(task)" }
        let cutoff = Self.wallMillis - TaskBook.millis(Self.reportGrace)
        for (vm, start) in book.recentlyStarted(since: cutoff) where taken[vm] == nil && !reported.contains(start.key) {
            taken[vm] = "started on local controller \(start.vm.meta.virtualMachineLocation.localControllerId)"
        }
        return taken
    }

    /// Accepts a virtual cluster and answers its task id once the submission is recorded; the VMs start after.
    /// `app`: the kvm-app this submission belongs to (recorded in the task), nil for a plain virtual cluster.
    func submit(_ request: VirtualClusterSubmissionRequest, app: String? = nil) async throws(DozeError) -> String {
        guard active else { throw DozeError(.unavailable, "this node is no longer the group leader") }
        let described = try await Self.describeTemplates(request, maxVMs: settings.maxVMs)
        try await whenLoaded()
        var managers = await self.managers()
        // Just elected: managers (and their controllers) are still joining; wait for them (bounded) rather than
        // fail the submission for want of room.
        let deadline = now + settleTime * 3
        while managers.values.allSatisfy({ $0.controllers.isEmpty }) && now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
            managers = await self.managers()
        }
        let prepared = try prepare(request, described: described, taken: takenNames(managers))
        let taskID = UUID().uuidString.lowercased()
        var vms: [TaskVM] = []
        var poolChanged = false
        // Which manager holds which controller (for `hostId` naming a controller).
        var managerOf: [NodeID: NodeID] = [:]
        for record in managers.values { for c in record.controllers { managerOf[c.id] = record.info.id } }
        // Drained hosts take no new VMs: their room is not the manager's to offer.
        let candidates = managers.values.map { PlacementCandidate(id: $0.info.id, free: $0.openSummary.free) }
        for p in prepared {
            var meta = VirtualMachineMetaData(location: VirtualMachineLocation(virtualMachineId: p.name), status: .unknown,
                                              xmlRepresentation: p.xml, requestedCapacity: p.demand,
                                              imageId: p.xml.isEmpty ? p.template.imageId : nil)
            if p.xml.isEmpty { meta.vncPassword = p.template.vncPassword }
            var vm = TaskVM(meta: meta, manager: nil, pinnedController: nil, isFinal: false)
            func fail(_ code: VMErrorCode, _ message: String) {
                vm.meta.status = .error
                vm.meta.errorCode = code
                vm.meta.errorMessage = message
                vm.isFinal = true
            }
            if var pool {
                do {
                    meta.ipAddress = try pool.allocate(for: p.name)
                    self.pool = pool
                    poolChanged = true
                    vm.meta.ipAddress = meta.ipAddress
                    if !p.xml.isEmpty, let mac = IPPool.mac(for: meta.ipAddress) {
                        vm.meta.xmlRepresentation = TemplateAdaptation.settingMAC(mac, in: p.xml)
                    }
                } catch {
                    fail(.notEnoughIPAddresses, "the VM subnet \(pool.subnet) has no free address left")
                }
            }
            if !vm.isFinal {
                var pinnedManager: NodeID?
                if let host = p.template.pinnedHost {
                    if managers[host] != nil {
                        pinnedManager = host
                    } else if let m = managerOf[host] {
                        pinnedManager = m
                        vm.pinnedController = host
                        vm.meta.virtualMachineLocation.localControllerId = host
                    } else {
                        fail(.invalidHostID, "hostId '\(host)' names no group manager or local controller of this cluster")
                    }
                }
                if !vm.isFinal {
                    let demand = HostUsage(vcpus: Int(p.demand.vcpus), memoryMiB: Int((p.demand.memoryKiB + 1023) / 1024))
                    // A manager qualifies only if one of its controllers could hold the VM on its own.
                    let able = candidates.filter { cand in
                        managers[cand.id]?.controllers.contains { c in
                            c.summary.total.vcpus >= p.demand.vcpus && c.summary.total.memoryKiB >= p.demand.memoryKiB
                        } ?? false
                    }
                    if managers.isEmpty {
                        fail(.notEnoughGroupManagerCapacity, "no group manager has joined the leader")
                    } else {
                        switch dispatch.place(p.name, demand: demand, among: pinnedManager == nil ? able : candidates, pinned: pinnedManager) {
                        case .success(let m):
                            let info = managers[m]!.info
                            vm.manager = m
                            vm.meta.virtualMachineLocation.groupManagerId = m
                            vm.meta.virtualMachineLocation.groupManagerControlDataAddress = NetworkAddress(address: info.control.host, port: info.control.port)
                            vm.meta.groupManagerControlDataAddress = vm.meta.virtualMachineLocation.groupManagerControlDataAddress
                            dispatchedAt[p.name] = now
                        case .failure(.notEnoughCapacity(let d, let largest)):
                            let room = largest.map { "the roomiest group manager has \($0.vcpus) vCPUs and \($0.memoryMiB) MiB free" } ?? "no group manager has a local controller that large"
                            fail(.notEnoughGroupManagerCapacity, "not enough capacity for VM '\(p.name)' (\(d.vcpus) vCPUs, \(d.memoryMiB) MiB): \(room)")
                        case .failure(.unknownHost(let h)), .failure(.hostUnschedulable(let h)):
                            fail(.invalidHostID, "group manager '\(h)' cannot take VMs")
                        }
                    }
                }
            }
            if vm.isFinal, vm.meta.status == .error { self.pool?.release(vm: p.name) }
            vms.append(vm)
        }
        var record = TaskRecord(id: taskID, createdAt: Self.wallMillis, vms: vms, app: app)
        if managers.isEmpty { record.clusterError = .groupManagersMissing }
        if record.isFinal { record.finishedAt = Self.wallMillis }
        book.add(record)
        do {
            try store?.saveTask(record)
            if poolChanged, let pool { try store?.saveIPPool(pool) }
            try await store?.flush()
        } catch {
            // Unrecorded, it could not survive a failover: refuse rather than promise what we cannot keep.
            book.fail(vms.map(\.id), in: taskID, code: .unableToStartOnGroupManager, message: "cannot record the submission: \(error)", nowMillis: Self.wallMillis)
            for vm in vms { self.pool?.release(vm: vm.id); dispatch.settle(vm.id) }
            throw DozeError(.unavailable, "cannot record the submission in the cluster records: \(error)")
        }
        log.info("virtual cluster submitted", metadata: ["doze/task": "\(taskID)", "doze/vms": "\(vms.count)"])
        if !record.isFinal { Task { await self.run(taskID) } }
        return taskID
    }

    // MARK: - Dispatching

    /// Sends every pending VM of a task to its group manager, one call per manager, all at once.
    private func run(_ taskID: String, retry: Bool = false) async {
        guard let record = book.records[taskID], !record.isFinal else { return }
        // Taking over from an earlier leader: a VM any controller already reports was started (perhaps by a
        // manager that has since restarted and forgotten it): record it, never ask for it again.
        var listed: [String: (ControllerInfo, ManagerInfo)] = [:]
        if retry {
            for m in await managers().values { for c in m.controllers { for vm in c.vms { listed[vm] = (c, m.info) } } }
            let found: [VirtualMachineMetaData] = record.vms.filter { !$0.isFinal && listed[$0.id] != nil }.map { vm in
                let (c, m) = listed[vm.id]!
                return Self.running(vm.meta, on: c, under: m)
            }
            if !found.isEmpty { self.record(found, task: taskID) }
        }
        var byManager: [NodeID: [TaskVM]] = [:]
        for vm in record.vms where !vm.isFinal && listed[vm.id] == nil { byManager[vm.manager ?? "", default: []].append(vm) }
        await withTaskGroup(of: Void.self) { group in
            for (manager, vms) in byManager {
                group.addTask { await self.dispatch(vms, to: manager, task: taskID, retry: retry) }
            }
        }
    }

    private func dispatch(_ vms: [TaskVM], to manager: NodeID, task: String, retry: Bool, tried: Set<NodeID> = []) async {
        let body = VirtualMachineSubmission(virtualMachineMetaData: vms.map { vm in
            var meta = vm.meta
            if vm.pinnedController == nil { meta.virtualMachineLocation.localControllerId = "UNKNOWN" }
            return meta
        })
        var lastError = ""
        var gone = false
        // Starting is idempotent per VM id on the manager, so asking again never starts a VM twice.
        for attempt in 0..<4 {
            guard active else { return }
            guard let info = await awaitManager(manager) else {
                lastError = "group manager \(manager) is gone"
                gone = true
                break
            }
            do {
                let target = "/groupmanager?startVirtualMachines&task=\(task)" + (retry || attempt > 0 ? "&retry" : "")
                let answer = try await peers.call(.POST, info.control, target, body: body,
                                                  as: VirtualMachineSubmission.self, timeout: .seconds(60) + .milliseconds(20 * vms.count))
                // A manager whose view was out of date (its controllers just left or re-joined) found no room: its
                // unpinned VMs get one more chance on another manager with room, instead of failing at once.
                let pinned = Set(vms.filter { $0.pinnedController != nil }.map(\.id))
                let refused = answer.virtualMachineMetaData.filter {
                    $0.errorCode == .notEnoughLocalControllerCapacity && !pinned.contains($0.virtualMachineLocation.virtualMachineId)
                }
                if !refused.isEmpty, tried.count < 2, let target = await anotherManager(for: refused, avoiding: tried.union([manager])) {
                    let ids = Set(refused.map { $0.virtualMachineLocation.virtualMachineId })
                    record(answer.virtualMachineMetaData.filter { !ids.contains($0.virtualMachineLocation.virtualMachineId) }, task: task)
                    for id in ids { book.setManager(target.id, for: id, in: task, address: NetworkAddress(address: target.control.host, port: target.control.port)) }
                    persist(task)   // a next leader must re-ask the manager that has them now
                    log.info("a group manager had no room; its VMs go to another", metadata: ["doze/from": "\(manager)", "doze/to": "\(target.id)", "doze/vms": "\(ids.count)"])
                    await dispatch(vms.filter { ids.contains($0.id) }.map { var v = $0; v.manager = target.id; return v },
                                   to: target.id, task: task, retry: true, tried: tried.union([manager]))
                    return
                }
                record(answer.virtualMachineMetaData, task: task)
                let answered = Set(answer.virtualMachineMetaData.map { $0.virtualMachineLocation.virtualMachineId })
                let missing = vms.map(\.id).filter { !answered.contains($0) }
                if !missing.isEmpty {
                    fail(missing, in: task, .invalidSubmissionResponse, "group manager \(manager) did not answer for these VMs")
                }
                return
            } catch {
                lastError = remoteError(error, "group manager \(manager) at \(info.control) did not answer").message
                log.warning("dispatch to a group manager failed", metadata: ["doze/gm": "\(manager)", "attempt": "\(attempt)", "error": "\(lastError)"])
                try? await Task.sleep(for: .milliseconds(250 * (attempt + 1)))
            }
        }
        guard active else { return }
        guard gone else {
            fail(vms.map(\.id), in: task, .unableToStartOnGroupManager, lastError)
            return
        }
        // The manager died with the VMs in hand. Its controllers re-join other managers and report what they run:
        // a VM that shows up started; one that does not goes to another manager.
        await recoverFromLostManager(vms, manager: manager, task: task, reason: lastError)
    }

    /// The manager with the most room (its open controllers' summaries) that can take all of `metas`, other than `avoiding`.
    private func anotherManager(for metas: [VirtualMachineMetaData], avoiding: Set<NodeID>) async -> ManagerInfo? {
        let need = metas.reduce(HostUsage()) { $0 + $1.demand }
        let candidates = await managers().values.filter { r in
            let free = r.openSummary.free
            return !avoiding.contains(r.info.id) && free.vcpus >= need.vcpus && free.memoryMiB >= need.memoryMiB
        }
        return candidates.max { $0.openSummary.freeFraction < $1.openSummary.freeFraction }?.info
    }

    /// A manager may not have joined a leader just elected: give it the time a join takes before calling it gone.
    private func awaitManager(_ id: NodeID) async -> ManagerInfo? {
        let deadline = now + settleTime * 5
        while active {
            if let info = await managers()[id]?.info { return info }
            if now >= deadline { return nil }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return nil
    }

    private func recoverFromLostManager(_ vms: [TaskVM], manager: NodeID, task: String, reason: String) async {
        let deadline = now + settleTime + .seconds(3)
        var remaining = Dictionary(uniqueKeysWithValues: vms.map { ($0.id, $0) })
        while !remaining.isEmpty && now < deadline && active {
            let current = await managers()
            for record in current.values {
                for c in record.controllers {
                    for vm in c.vms where remaining[vm] != nil {
                        self.record([Self.running(remaining[vm]!.meta, on: c, under: record.info)], task: task)
                        remaining[vm] = nil
                    }
                }
            }
            try? await Task.sleep(for: .milliseconds(250))
        }
        guard !remaining.isEmpty, active else { return }
        // Not in any heartbeat yet. Before starting them elsewhere, ask every controller itself: one that started a
        // VM may not have re-joined a manager yet. While any controller cannot be asked, nothing is re-placed (a VM
        // started twice is worse than one that failed); after a bound the VMs fail with that reason.
        let askDeadline = now + .seconds(20)
        while active {
            let current = await managers()
            let controllers = current.values.flatMap(\.controllers)
            var silent = 0
            for c in controllers {
                guard let answer = try? await peers.call(.POST, c.control, "/localcontroller?getVirtualMachines", body: "0",
                                                         as: [VirtualMachineMetaData].self, timeout: .seconds(2)) else { silent += 1; continue }
                for var meta in answer where remaining[meta.virtualMachineLocation.virtualMachineId] != nil {
                    let vm = meta.virtualMachineLocation.virtualMachineId
                    if let owner = current.values.first(where: { $0.controllers.contains { $0.id == c.id } })?.info {
                        meta.virtualMachineLocation.groupManagerId = owner.id
                        meta.virtualMachineLocation.groupManagerControlDataAddress = NetworkAddress(address: owner.control.host, port: owner.control.port)
                        meta.groupManagerControlDataAddress = meta.virtualMachineLocation.groupManagerControlDataAddress
                    }
                    self.record([meta], task: task)
                    remaining[vm] = nil
                }
            }
            if remaining.isEmpty { return }
            if silent == 0 && !controllers.isEmpty { break }
            guard now < askDeadline else {
                fail(Array(remaining.keys), in: task, .unableToStartOnGroupManager,
                     "group manager \(manager) was lost with these VMs (\(reason)), and \(silent) local controller(s) could not be asked whether they run them")
                return
            }
            try? await Task.sleep(for: .milliseconds(500))
        }
        guard active else { return }
        // Place the rest on another manager, once.
        let current = await managers()
        let others = current.filter { $0.key != manager }
        guard let target = others.values.min(by: { $0.summary.freeFraction > $1.summary.freeFraction })?.info else {
            fail(Array(remaining.keys), in: task, .unableToStartOnGroupManager, "group manager \(manager) unreachable (\(reason)) and no other manager is left")
            return
        }
        for id in remaining.keys { book.setManager(target.id, for: id, in: task, address: NetworkAddress(address: target.control.host, port: target.control.port)) }
        persist(task)
        guard let record = book.records[task] else { return }
        let moved = record.vms.filter { remaining[$0.id] != nil && !$0.isFinal }
        log.warning("re-dispatching VMs of a lost group manager", metadata: ["doze/from": "\(manager)", "doze/to": "\(target.id)", "doze/vms": "\(moved.count)"])
        await dispatch(moved.map { var v = $0; v.manager = target.id; return v }, to: target.id, task: task, retry: true)
    }

    /// A VM a controller reports: RUNNING there, under that controller's manager.
    static func running(_ meta: VirtualMachineMetaData, on c: ControllerInfo, under m: ManagerInfo) -> VirtualMachineMetaData {
        var meta = meta
        meta.status = .running
        meta.virtualMachineLocation.localControllerId = c.id
        meta.virtualMachineLocation.localControllerControlDataAddress = NetworkAddress(address: c.control.host, port: c.control.port)
        meta.virtualMachineLocation.groupManagerId = m.id
        meta.virtualMachineLocation.groupManagerControlDataAddress = NetworkAddress(address: m.control.host, port: m.control.port)
        meta.groupManagerControlDataAddress = meta.virtualMachineLocation.groupManagerControlDataAddress
        return meta
    }

    private func record(_ results: [VirtualMachineMetaData], task: String) {
        guard active else { return }
        let finished = book.apply(results, to: task, nowMillis: Self.wallMillis)
        var released = false
        for r in results where r.status != .error && dispatchedAt[r.virtualMachineLocation.virtualMachineId] != nil {
            answeredAt[r.virtualMachineLocation.virtualMachineId] = now
        }
        for r in results where r.status == .error {
            let vm = r.virtualMachineLocation.virtualMachineId
            dispatch.settle(vm)
            dispatchedAt[vm] = nil
            pool?.release(vm: vm)
            released = true
        }
        if released, let pool { try? store?.saveIPPool(pool) }
        // Progress is not written: after a failover the managers answer again (idempotently) for what they did.
        if finished {
            persist(task)
            finish(task)
        }
    }

    private func fail(_ vms: [String], in task: String, _ code: VMErrorCode, _ message: String) {
        let metas: [VirtualMachineMetaData] = (book.records[task]?.vms ?? []).filter { vms.contains($0.id) && !$0.isFinal }.map {
            var m = $0.meta
            m.status = .error
            m.errorCode = code
            m.errorMessage = message
            return m
        }
        record(metas, task: task)
    }

    private func persist(_ task: String) {
        guard active, let record = book.records[task] else { return }
        do { try store?.saveTask(record) } catch {
            log.error("cannot record a submission's progress", metadata: ["doze/task": "\(task)", "error": "\(error)"])
        }
    }

    private func finish(_ task: String) {
        if let r = book.records[task] {
            let c = r.counts
            log.info("virtual cluster done", metadata: ["doze/task": "\(task)", "doze/running": "\(c.running)", "doze/failed": "\(c.failed)"])
        }
        for c in waiters.removeValue(forKey: task)?.values ?? [:].values { c.resume() }
    }

    // MARK: - Reading results

    /// The task's document; with `wait`, returns the moment it is final or when `wait` has passed.
    func document(_ taskID: String, wait: Duration = .zero) async throws(DozeError) -> VirtualClusterTaskDocument {
        try await whenLoaded()
        let id = taskID.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let first = book.document(id) else {
            throw DozeError(.notFound, "unknown task id '\(id)' (never submitted, or its result expired)")
        }
        guard first.state == .pending, wait > .zero, active else { return first }
        let token = UUID()
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            waiters[id, default: [:]][token] = c
            Task {
                try? await Task.sleep(for: wait)
                self.timeOut(id, token)
            }
        }
        return book.document(id) ?? first
    }

    private func timeOut(_ id: String, _ token: UUID) {
        waiters[id]?.removeValue(forKey: token)?.resume()
    }

    /// Where a VM runs, from the heartbeats (or, for one that just started, from its submission). A VM whose
    /// controller is between managers (its manager just became leader, or died) is waited for, bounded, rather
    /// than sent to a manager that no longer holds it.
    func discover(_ vm: String) async throws(DozeError) -> VirtualMachineDiscoveryResponse {
        let deadline = now + settleTime * 8
        while true {
            let current = await managers()
            var controllers: Set<NodeID> = []
            for record in current.values {
                for c in record.controllers {
                    controllers.insert(c.id)
                    if c.vms.contains(vm) {
                        return VirtualMachineDiscoveryResponse(
                            localControllerId: c.id, groupManagerAddress: NetworkAddress(address: record.info.control.host, port: record.info.control.port),
                            groupManagerId: record.info.id, localControllerAddress: NetworkAddress(address: c.control.host, port: c.control.port))
                    }
                }
            }
            let cutoff = Self.wallMillis - TaskBook.millis(Self.reportGrace)
            // Once the heartbeats have listed a VM, they alone say where (or whether) it is.
            if let start = book.recentlyStarted(since: cutoff)[vm], !reported.contains(start.key) {
                let l = start.vm.meta.virtualMachineLocation
                if current[l.groupManagerId] != nil, controllers.contains(l.localControllerId) {
                    return VirtualMachineDiscoveryResponse(localControllerId: l.localControllerId, groupManagerAddress: l.groupManagerControlDataAddress,
                                                           groupManagerId: l.groupManagerId, localControllerAddress: l.localControllerControlDataAddress)
                }
                if now < deadline {
                    try? await Task.sleep(for: .milliseconds(50))
                    continue
                }
                throw DozeError(.unavailable, "VM '\(vm)' is on local controller \(l.localControllerId), which is joining another group manager; retry in a moment")
            }
            if let task = book.pendingVMs[vm] {
                throw DozeError(.conflict, "VM '\(vm)' is still being started by task \(task)")
            }
            throw DozeError(.notFound, "no VM '\(vm)' in the cluster")
        }
    }

    /// A VM moved (live migration): its task's answer names its new home from now on.
    func relocate(_ vm: String, to location: VirtualMachineLocation) {
        guard let task = book.relocate(vm, to: location) else { return }
        persist(task)
    }

    // MARK: - Upkeep

    /// Heartbeat-paced upkeep: settle dispatch reservations the summaries now show, expire old results, and
    /// give back the addresses of VMs that ended.
    func tick() async {
        guard active, loaded else { return }
        let current = await managers()
        var listed: [String: NodeID] = [:]
        for record in current.values { for c in record.controllers { for vm in c.vms { listed[vm] = record.info.id } } }
        let now = self.now
        for (vm, at) in dispatchedAt where listed[vm] != nil || now - at > Self.reportGrace + .seconds(5)
            || answeredAt[vm].map({ now - $0 > settleTime }) == true {
            dispatch.settle(vm)
            dispatchedAt[vm] = nil
            answeredAt[vm] = nil
        }
        for id in book.expire(nowMillis: Self.wallMillis) { try? store?.deleteTask(id) }
        let recentStarts = book.recentlyStarted(since: Self.wallMillis - TaskBook.millis(Self.reportGrace)).values
        let recentKeys = Set(recentStarts.map(\.key))
        reported = reported.intersection(recentKeys).union(recentStarts.filter { listed[$0.vm.id] != nil }.map(\.key))
        guard now > settleTime * 4, var pool else { return }
        let recent = book.recentlyStarted(since: Self.wallMillis - TaskBook.millis(Self.reportGrace))
        var changed = false
        for vm in Set(pool.allocated.values) {
            if listed[vm] != nil || book.pendingVMs[vm] != nil || recent[vm] != nil {
                absentSince[vm] = nil
            } else if let since = absentSince[vm] {
                if now - since >= Self.addressGrace {
                    pool.release(vm: vm)
                    absentSince[vm] = nil
                    changed = true
                }
            } else {
                absentSince[vm] = now
            }
        }
        if changed {
            self.pool = pool
            try? store?.saveIPPool(pool)
        }
    }
}
