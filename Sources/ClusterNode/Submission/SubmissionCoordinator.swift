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
/// whoever waits for the result. The decisions are pure: `SubmissionPlanner` gives addresses and managers,
/// `ManagerDispatch` and `LostManagerRecovery` say what each outcome of a dispatch leads to, `TaskBook` keeps the
/// results. This actor does the IO they ask for and feeds back what happened.
actor SubmissionCoordinator {
    typealias Managers = @Sendable () async -> [NodeID: GroupLeaderState.ManagerRecord]

    let settings: SubmissionSettings
    let store: (any ClusterRecordStore)?
    let managers: Managers
    let peers = PeerClient(timeout: .seconds(30))
    let log: Logger
    let metrics: NodeMetrics?
    /// A manager just elected waits this long for managers to report before trusting its view of the cluster.
    let settleTime: Duration
    private let clock = ContinuousClock()
    private let started: ContinuousClock.Instant
    private var book: TaskBook
    /// Addresses, placement reservations, and where VMs go.
    private var planner: SubmissionPlanner
    private var waiters: [String: [UUID: CheckedContinuation<Void, Never>]] = [:]
    /// Recently started VMs (task/VM keys: a name can be started again by a later task) the heartbeats have
    /// listed since: from then on the listings alone say whether the name is taken and where the VM is.
    private var reported: Set<String> = []
    private(set) var active = true
    /// Energy saving: wakes a sleeping host when placement finds no room, true once it is back (bounded).
    private var wakeForRoom: (@Sendable (Duration) async -> Bool)?
    static let wakeWait: Duration = .seconds(150)

    func setWakeForRoom(_ wake: @escaping @Sendable (Duration) async -> Bool) { wakeForRoom = wake }
    /// VMs the failover keeps though no heartbeat lists them (their host is down): their addresses stay theirs.
    private var heldAddresses: Set<String> = []
    /// Seed 004's switches and floating IPs (`SubmissionCoordinator+Networks.swift`).
    var networkBook = NetworkBook()
    var floatingInFlight: Set<String> = []
    /// What each floating IP's host did with it (`linux`, `none`), as it last answered.
    var floatingDataPlane: [String: String] = [:]
    var networkAbsentSince: [String: Duration] = [:]
    /// How long a VM that just started keeps its name taken before heartbeats list it.
    static let reportGrace: Duration = .seconds(5)

    /// Reads back what earlier leaders recorded before the coordinator answers anything, so a task id answered
    /// before a failover is known the moment this node leads.
    init(settings: SubmissionSettings, store: (any ClusterRecordStore)?, settleTime: Duration, logger: Logger,
         metrics: NodeMetrics? = nil, managers: @escaping Managers) {
        self.metrics = metrics
        self.settings = settings
        self.store = store
        self.managers = managers
        self.settleTime = settleTime
        self.log = logger
        self.book = TaskBook(resultTTL: settings.resultTTL)
        var plannerSettings = SubmissionPlanner.Settings(settleTime: settleTime)
        plannerSettings.reservationTimeout = Self.reportGrace + .seconds(5)
        self.planner = SubmissionPlanner(policy: settings.dispatch, settings: plannerSettings)
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
        planner.pool = pool
        await loadNetworks()
        loaded = true
    }

    private(set) var loaded = false

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
        for (_, list) in waiters { for waiter in list.values { waiter.resume() } }
        waiters = [:]
    }

    // MARK: - Submitting

    struct Prepared {
        var name: String
        var xml: String
        var demand: ResourceVector
        var template: VirtualMachineTemplate
        var request: SubmissionPlanner.VMRequest { .init(name: name, demand: demand, pinnedHost: template.pinnedHost) }
    }

    /// Checks the whole request first: a malformed template, a bad name or a duplicate refuses the submission
    /// and creates nothing.
    func prepare(_ request: VirtualClusterSubmissionRequest, described: [Int: DomainDescription],
                 taken: [String: String]) throws(DozeError) -> [Prepared] {
        let templates = request.virtualMachineTemplates
        var prepared: [Prepared] = []
        var seen: [String: Int] = [:]
        for (index, template) in templates.enumerated() {
            let field = "virtualMachineTemplates[\(index)]"
            var vm: Prepared
            if let xml = template.libVirtTemplate, let description = described[index] {
                vm = Prepared(name: description.name, xml: xml, demand: ResourceVector(vcpus: Double(description.vcpus), memoryKiB: Double(description.memoryKiB)), template: template)
            } else {
                guard let name = template.name, !name.isEmpty else {
                    throw DozeError(.badRequest, "\(field): give a libVirtTemplate, or a name and an imageId")
                }
                guard let image = template.imageId, !image.isEmpty else {
                    throw DozeError(.badRequest, "\(field): VM '\(name)' has no libVirtTemplate, so it needs an imageId")
                }
                guard !image.contains("/"), !image.hasPrefix(".") else {
                    throw DozeError(.badRequest, "\(field): imageId '\(image)' must be a file name in the hosts' image pool")
                }
                let vcpus = template.vcpus ?? 1
                let memory = template.memory ?? 131_072
                guard (1...DomainDescription.maxVCPUs).contains(vcpus) else {
                    throw DozeError(.badRequest, "\(field): vcpus must be 1...\(DomainDescription.maxVCPUs), got \(vcpus)")
                }
                guard memory >= 1024, UInt64(memory) <= DomainDescription.maxMemoryKiB else {
                    throw DozeError(.badRequest, "\(field): memory is in KiB, from 1024 to \(DomainDescription.maxMemoryKiB), got \(memory)")
                }
                do { try VMVolume.checkDataDisks(template.disks ?? []) } catch { throw DozeError(.badRequest, "\(field): \(error.message)") }
                vm = Prepared(name: name, xml: "", demand: ResourceVector(vcpus: Double(vcpus), memoryKiB: Double(memory)), template: template)
            }
            do { try Validation.vmName(vm.name) } catch { throw DozeError(.badRequest, "\(field): \(error.message)") }
            do {
                try Validation.networkDemand(template.networkCapacityDemand.rxBytes, what: "networkCapacityDemand.rxBytes")
                try Validation.networkDemand(template.networkCapacityDemand.txBytes, what: "networkCapacityDemand.txBytes")
            } catch { throw DozeError(.badRequest, "\(field): \(error.message)") }
            try checkNetworks(of: template, field: field)
            vm.demand.rxBytes = template.networkCapacityDemand.rxBytes
            vm.demand.txBytes = template.networkCapacityDemand.txBytes
            if let first = seen[vm.name] {
                throw DozeError(.conflict, "VM name '\(vm.name)' appears twice in the submission (templates \(first) and \(index)); names are unique")
            }
            seen[vm.name] = index
            if let holder = taken[vm.name] {
                throw DozeError(.conflict, "a VM named '\(vm.name)' already exists (\(holder)); names are unique in the cluster")
            }
            prepared.append(vm)
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
        for (index, template) in templates.enumerated() {
            guard let xml = template.libVirtTemplate, !xml.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { continue }
            do { described[index] = try DomainDescription(xml: xml) } catch {
                throw DozeError(.badRequest, "virtualMachineTemplates[\(index)]: invalid libVirtTemplate: \(error.message)")
            }
        }
        return described
    }

    /// Names in use: VMs the heartbeats list, VMs of submissions in flight, VMs that just started (other than
    /// `restarting`: HA VMs whose host died just after they started). Value: where.
    func takenNames(_ managers: [NodeID: GroupLeaderState.ManagerRecord], restarting: Set<String> = []) -> [String: String] {
        var taken: [String: String] = [:]
        for record in managers.values {
            for controller in record.controllers { for vm in controller.vms { taken[vm] = "on local controller \(controller.id)" } }
        }
        for (vm, task) in book.pendingVMs { taken[vm] = "being started by task \(task)" }
        let cutoff = Self.wallMillis - TaskBook.millis(Self.reportGrace)
        for (vm, start) in book.recentlyStarted(since: cutoff) where taken[vm] == nil && !reported.contains(start.key) && !restarting.contains(vm) {
            taken[vm] = start.vm.meta.virtualMachineLocation.localControllerId.map { "started on local controller \($0)" } ?? "being started"
        }
        return taken
    }

    /// Accepts a virtual cluster and answers its task id once the submission is recorded; the VMs start after.
    /// `app`: the kvm-app this submission belongs to (recorded in the task), nil for a plain virtual cluster.
    /// `restarting`: names of HA VMs being restarted after their host was fenced (their last start does not take
    /// the name; a listing or a pending submission still does).
    func submit(_ request: VirtualClusterSubmissionRequest, app: String? = nil,
                restarting: Set<String> = []) async throws(DozeError) -> String {
        guard active else { throw DozeError(.unavailable, "this node is no longer the group leader") }
        let described = try await Self.describeTemplates(request, maxVMs: settings.maxVMs)
        try await whenLoaded()
        var managers = await joinedManagers()
        var prepared = try prepare(request, described: described, taken: takenNames(managers, restarting: restarting))
        var plans = planner.plan(prepared.map(\.request), managers: managers, now: now)
        // No room: wake sleeping hosts one at a time (each bounded) and plan again, instead of failing at once.
        let deadline = now + Self.wakeWait
        while let wake = wakeForRoom, !managers.isEmpty, now < deadline, plans.contains(where: Self.lacksRoom) {
            planner.onNotRecorded(prepared.map(\.name))
            let woke = await wake(deadline - now)
            managers = await self.managers()
            prepared = try prepare(request, described: described, taken: takenNames(managers, restarting: restarting))
            plans = planner.plan(prepared.map(\.request), managers: managers, now: now)
            if !woke { break }
            log.info("a sleeping host woke for a submission", metadata: ["doze/vms": "\(prepared.count)"])
        }
        // No suspension from here to `book.add`: a concurrent submission sees these names taken, this room reserved.
        var vms = zip(prepared, plans).map { Self.taskVM($0, planned: $1) }
        let attached: [String: [NetworkAttachment]]
        do {
            attached = try attachNetworks(zip(prepared, plans).compactMap { vm, plan in
                guard case .dispatch = plan.directive else { return nil }
                return (vm.name, vm.template.networks ?? [])
            })
        } catch {
            planner.onNotRecorded(prepared.map(\.name))
            throw error
        }
        for index in vms.indices { vms[index].meta.networks = attached[vms[index].id] }
        let taskID = UUID().uuidString.lowercased()
        var record = TaskRecord(id: taskID, createdAt: Self.wallMillis, vms: vms, app: app)
        if managers.isEmpty { record.clusterError = .groupManagersMissing }
        if record.isFinal { record.finishedAt = Self.wallMillis }
        book.add(record)
        do {
            try store?.saveTask(record)
            if plans.contains(where: { $0.ipAddress != nil }), let pool = planner.pool { try store?.saveIPPool(pool) }
            if !attached.isEmpty { try store?.saveNetworks(networkBook) }
            try await store?.flush()
        } catch {
            // Unrecorded, it could not survive a failover: refuse rather than promise what we cannot keep.
            book.fail(vms.map(\.id), in: taskID, code: .unableToStartOnGroupManager, message: "cannot record the submission: \(error)", nowMillis: Self.wallMillis)
            planner.onNotRecorded(vms.map(\.id))
            for vm in attached.keys { networkBook.release(vm: vm) }
            throw DozeError(.unavailable, "cannot record the submission in the cluster records: \(error)")
        }
        log.info("virtual cluster submitted", metadata: ["doze/task": "\(taskID)", "doze/vms": "\(vms.count)"])
        if record.isFinal { metrics?.submissionEnded(.failure, after: .zero) } else { Task { await self.run(taskID) } }
        return taskID
    }

    static func lacksRoom(_ plan: SubmissionPlanner.VMPlan) -> Bool {
        if case .fail(.notEnoughGroupManagerCapacity, _) = plan.directive { return true }
        return false
    }

    /// The leader's view of the managers. Just elected, managers (and their controllers) are still joining: wait
    /// for them (bounded) rather than fail a submission for want of room.
    private func joinedManagers() async -> SubmissionPlanner.Managers {
        var managers = await self.managers()
        let deadline = now + settleTime * 3
        while managers.values.allSatisfy({ $0.controllers.isEmpty }) && now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
            managers = await self.managers()
        }
        return managers
    }

    /// A VM as its task records it: the template's metadata with what the plan gave it.
    static func taskVM(_ prepared: Prepared, planned: SubmissionPlanner.VMPlan) -> TaskVM {
        var meta = VirtualMachineMetaData(location: VirtualMachineLocation(virtualMachineId: prepared.name), status: .unknown,
                                          xmlRepresentation: prepared.xml, requestedCapacity: prepared.demand,
                                          imageId: prepared.xml.isEmpty ? prepared.template.imageId : nil)
        if prepared.xml.isEmpty {
            meta.vncPassword = prepared.template.vncPassword
            meta.disks = prepared.template.disks
        }
        if prepared.template.isHighlyAvailable { meta.ha = true }
        meta.tenant = prepared.template.tenant
        if let address = planned.ipAddress {
            meta.ipAddress = address
            if !prepared.xml.isEmpty, let mac = IPPool.mac(for: address) {
                meta.xmlRepresentation = TemplateAdaptation.settingMAC(mac, in: prepared.xml)
            }
        }
        if let controller = planned.pinnedController { meta.virtualMachineLocation.localControllerId = controller }
        var vm = TaskVM(meta: meta, manager: nil, pinnedController: planned.pinnedController, isFinal: false,
                        haTemplate: prepared.template.isHighlyAvailable ? prepared.template : nil)
        switch planned.directive {
        case .dispatch(let manager):
            vm.manager = manager.id
            vm.meta.locate(under: manager)
        case .fail(let code, let message):
            vm.meta.status = .error
            vm.meta.errorCode = code
            vm.meta.errorMessage = message
            vm.isFinal = true
        }
        return vm
    }

    // MARK: - Dispatching

    /// Sends every pending VM of a task to its group manager, one call per manager, all at once.
    private func run(_ taskID: String, retry: Bool = false) async {
        guard let record = book.records[taskID], !record.isFinal else { return }
        // Taking over from an earlier leader: a VM any controller already reports was started (perhaps by a
        // manager that has since restarted and forgotten it): record it, never ask for it again.
        var listed: [String: (ControllerInfo, ManagerInfo)] = [:]
        if retry {
            for manager in await managers().values {
                for controller in manager.controllers { for vm in controller.vms { listed[vm] = (controller, manager.info) } }
            }
            let found: [VirtualMachineMetaData] = record.vms.filter { !$0.isFinal && listed[$0.id] != nil }.map { vm in
                let (controller, manager) = listed[vm.id]!
                return Self.running(vm.meta, on: controller, under: manager)
            }
            if !found.isEmpty { self.record(found, task: taskID) }
        }
        var byManager: [NodeID: [TaskVM]] = [:]
        var inNoHands: [TaskVM] = []
        for vm in record.vms where !vm.isFinal && listed[vm.id] == nil {
            if let manager = vm.manager { byManager[manager, default: []].append(vm) } else { inNoHands.append(vm) }
        }
        await withTaskGroup(of: Void.self) { group in
            for (manager, vms) in byManager {
                group.addTask { await self.dispatch(vms, to: manager, task: taskID, retry: retry) }
            }
            // Recorded without a manager (an earlier leader's record cut short): found or placed as a lost manager's.
            if !inNoHands.isEmpty {
                let inNoHands = inNoHands
                group.addTask {
                    await self.recoverFromLostManager(inNoHands, manager: "(none recorded)", task: taskID,
                                                      reason: "no group manager was recorded for these VMs")
                }
            }
        }
    }

    /// Carries out a `ManagerDispatch`: the calls, pauses and records it asks for.
    private func dispatch(_ vms: [TaskVM], to manager: NodeID, task: String, retry: Bool, tried: Set<NodeID> = []) async {
        let body = VirtualMachineSubmission(virtualMachineMetaData: vms.map { vm in
            var meta = vm.meta
            if vm.pinnedController == nil { meta.virtualMachineLocation.localControllerId = nil }   // the manager places it
            return meta
        })
        var attempt = ManagerDispatch(manager: manager, vms: vms.map { .init(id: $0.id, pinned: $0.pinnedController != nil) }, tried: tried)
        var directives = attempt.start()
        var answer: [VirtualMachineMetaData] = []
        while active, !directives.isEmpty {
            switch directives.removeFirst() {
            case .send(let number):
                guard let info = await awaitManager(manager) else {
                    directives += attempt.onManagerGone()
                    continue
                }
                do {
                    let target = "/groupmanager?startVirtualMachines&task=\(task)" + (retry || number > 0 ? "&retry" : "")
                    answer = try await peers.call(.POST, info.control, target, body: body, as: VirtualMachineSubmission.self,
                                                  timeout: .seconds(60) + .milliseconds(20 * vms.count)).virtualMachineMetaData
                    let answers = answer.map { ManagerDispatch.Answer(vm: $0.virtualMachineLocation.virtualMachineId, errorCode: $0.errorCode, demand: $0.demand) }
                    let view = attempt.needsManagersView(for: answers) ? await managers() : [:]
                    directives += attempt.onAnswer(answers, managers: view)
                } catch {
                    let message = remoteError(error, "group manager \(manager) at \(info.control) did not answer").message
                    log.warning("dispatch to a group manager failed", metadata: ["doze/gm": "\(manager)", "attempt": "\(number)", "error": "\(message)"])
                    directives += attempt.onCallFailed(message)
                }
            case .backOff(let pause):
                try? await Task.sleep(for: pause)
                directives += attempt.onBackoffElapsed()
            case .record(let ids):
                let recorded = Set(ids)
                record(answer.filter { recorded.contains($0.virtualMachineLocation.virtualMachineId) }, task: task)
            case .fail(let ids, let code, let message):
                fail(ids, in: task, code, message)
            case .move(let ids, let target, let tried):
                for id in ids { book.setManager(target.id, for: id, in: task, address: NetworkAddress(target.control)) }
                persist(task)   // a next leader must re-ask the manager that has them now
                log.info("a group manager had no room; its VMs go to another", metadata: ["doze/from": "\(manager)", "doze/to": "\(target.id)", "doze/vms": "\(ids.count)"])
                let moved = vms.filter { ids.contains($0.id) }.map { vm in
                    var vm = vm
                    vm.manager = target.id
                    return vm
                }
                await dispatch(moved, to: target.id, task: task, retry: true, tried: tried)
            case .recover(let reason):
                await recoverFromLostManager(vms, manager: manager, task: task, reason: reason)
            }
        }
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

    /// Carries out a `LostManagerRecovery`: the manager died with `vms` in hand.
    private func recoverFromLostManager(_ vms: [TaskVM], manager: NodeID, task: String, reason: String) async {
        let batch = Dictionary(uniqueKeysWithValues: vms.map { ($0.id, $0) })
        var recovery = LostManagerRecovery(manager: manager, vms: vms.map(\.id), reason: reason,
                                           settings: .init(settleTime: settleTime), now: now)
        var directives = recovery.start()
        while active, !directives.isEmpty {
            switch directives.removeFirst() {
            case .lookInHeartbeats:
                let found = await recordListed(Set(recovery.remaining), from: batch, task: task)
                directives += recovery.onLookedInHeartbeats(found: found)
            case .pause(let pause):
                try? await Task.sleep(for: pause)
                directives += recovery.onPauseElapsed(now: now)
            case .askControllers:
                let (found, asked, silent) = await askControllers(for: Set(recovery.remaining), task: task)
                directives += recovery.onAskedControllers(found: found, asked: asked, silent: silent, now: now)
            case .chooseManager:
                directives += recovery.onManagersView(await managers())
            case .fail(let ids, let code, let message):
                fail(ids, in: task, code, message)
            case .move(let ids, let target):
                for id in ids { book.setManager(target.id, for: id, in: task, address: NetworkAddress(target.control)) }
                persist(task)
                guard let record = book.records[task] else { return }
                let moved = record.vms.filter { ids.contains($0.id) && !$0.isFinal }
                log.warning("re-dispatching VMs of a lost group manager", metadata: ["doze/from": "\(manager)", "doze/to": "\(target.id)", "doze/vms": "\(moved.count)"])
                await dispatch(moved.map { vm in
                    var vm = vm
                    vm.manager = target.id
                    return vm
                }, to: target.id, task: task, retry: true)
            }
        }
    }

    /// Records as running the VMs of `wanted` the heartbeats list; returns them.
    private func recordListed(_ wanted: Set<String>, from batch: [String: TaskVM], task: String) async -> Set<String> {
        var found: Set<String> = []
        for manager in await managers().values {
            for controller in manager.controllers {
                for vm in controller.vms where wanted.contains(vm) && !found.contains(vm) {
                    record([Self.running(batch[vm]!.meta, on: controller, under: manager.info)], task: task)
                    found.insert(vm)
                }
            }
        }
        return found
    }

    /// Asks every controller what it runs and records the VMs of `wanted` found, under the manager that holds
    /// the controller now. Returns them, how many controllers were asked and how many did not answer.
    private func askControllers(for wanted: Set<String>, task: String) async -> (found: Set<String>, asked: Int, silent: Int) {
        let current = await managers()
        let controllers = current.values.flatMap(\.controllers)
        var found: Set<String> = []
        var silent = 0
        for controller in controllers {
            guard let answer = try? await peers.call(.POST, controller.control, "/localcontroller?getVirtualMachines", body: "0",
                                                     as: [VirtualMachineMetaData].self, timeout: .seconds(2)) else {
                silent += 1
                continue
            }
            for var meta in answer where wanted.contains(meta.virtualMachineLocation.virtualMachineId)
                && !found.contains(meta.virtualMachineLocation.virtualMachineId) {
                if let owner = current.values.first(where: { $0.controllers.contains { $0.id == controller.id } })?.info {
                    meta.locate(under: owner)
                }
                record([meta], task: task)
                found.insert(meta.virtualMachineLocation.virtualMachineId)
            }
        }
        return (found, controllers.count, silent)
    }

    /// A VM a controller reports: RUNNING there, under that controller's manager.
    static func running(_ meta: VirtualMachineMetaData, on controller: ControllerInfo, under manager: ManagerInfo) -> VirtualMachineMetaData {
        var meta = meta
        meta.status = .running
        meta.locate(onController: controller.id, at: NetworkAddress(controller.control))
        meta.locate(under: manager)
        return meta
    }

    private func record(_ results: [VirtualMachineMetaData], task: String) {
        guard active else { return }
        let finished = book.apply(results, to: task, nowMillis: Self.wallMillis)
        var released = false
        for result in results {
            let vm = result.virtualMachineLocation.virtualMachineId
            if result.status == .error {
                planner.onFailed(vm)
                releaseNetworks(of: vm)
                released = true
            } else {
                planner.onAnswered(vm, now: now)
            }
        }
        if released, let pool = planner.pool { try? store?.saveIPPool(pool) }
        // Progress is not written: after a failover the managers answer again (idempotently) for what they did.
        if finished {
            persist(task)
            finish(task)
        }
    }

    private func fail(_ vms: [String], in task: String, _ code: VMErrorCode, _ message: String) {
        let metas: [VirtualMachineMetaData] = (book.records[task]?.vms ?? []).filter { vms.contains($0.id) && !$0.isFinal }.map {
            var meta = $0.meta
            meta.status = .error
            meta.errorCode = code
            meta.errorMessage = message
            return meta
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
        if let finished = book.records[task] {
            let counts = finished.counts
            metrics?.submissionEnded(.init(running: counts.running, failed: counts.failed),
                                     after: .milliseconds(max(0, (finished.finishedAt ?? Self.wallMillis) - finished.createdAt)))
            log.info("virtual cluster done", metadata: ["doze/task": "\(task)", "doze/running": "\(counts.running)", "doze/failed": "\(counts.failed)"])
        }
        for waiter in waiters.removeValue(forKey: task)?.values ?? [:].values { waiter.resume() }
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
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            waiters[id, default: [:]][token] = continuation
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
    /// VMs submitted with a `hostId` naming their local controller (and kvm-app VMs placed by constraints):
    /// the rebalancer never moves them.
    /// The tasks as the events stream sees them: where each VM was placed, and whether the task is over.
    func taskViews() -> [String: ClusterSnapshot.Task] {
        book.records.mapValues { record in
            let counts = record.counts
            return ClusterSnapshot.Task(
                placements: Dictionary(record.vms.map { ($0.id, $0.meta.virtualMachineLocation.localControllerId) }, uniquingKeysWith: { first, _ in first }),
                isFinal: record.isFinal, running: counts.running, failed: counts.failed, tenant: record.vms.first?.meta.tenant)
        }
    }

    func pinnedVMs() -> Set<String> {
        Set(book.records.values.flatMap(\.vms).filter { $0.pinnedController != nil }.map(\.id))
    }

    func discover(_ vm: String) async throws(DozeError) -> VirtualMachineDiscoveryResponse {
        let deadline = now + settleTime * 8
        while true {
            let current = await managers()
            var controllers: [NodeID: ControllerInfo] = [:]
            for record in current.values {
                for controller in record.controllers {
                    controllers[controller.id] = controller
                    if controller.vms.contains(vm) { return VirtualMachineDiscoveryResponse(controller: controller, manager: record.info) }
                }
            }
            let cutoff = Self.wallMillis - TaskBook.millis(Self.reportGrace)
            // Once the heartbeats have listed a VM, they alone say where (or whether) it is.
            if let start = book.recentlyStarted(since: cutoff)[vm], !reported.contains(start.key) {
                let location = start.vm.meta.virtualMachineLocation
                // Its recorded manager still leads it, or will once the controller re-joins there.
                if let managerID = location.groupManagerId, let manager = current[managerID],
                   let controllerID = location.localControllerId, let controller = controllers[controllerID] {
                    return VirtualMachineDiscoveryResponse(controller: controller, manager: manager.info)
                }
                if now < deadline {
                    try? await Task.sleep(for: .milliseconds(50))
                    continue
                }
                throw DozeError(.unavailable, "VM '\(vm)' is on local controller \(location.localControllerId ?? "(not known yet)"), which is joining another group manager; retry in a moment")
            }
            // Listed once since its start, and in no summary now: summaries can briefly disagree (a manager's join,
            // sent over HTTP with an older list, landing after its newer heartbeat summary). Wait for them, bounded;
            // a VM really gone since stays unlisted and is not found once the deadline passes.
            if book.recentlyStarted(since: cutoff)[vm] != nil, now < deadline {
                try? await Task.sleep(for: .milliseconds(50))
                continue
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
        for record in current.values {
            for controller in record.controllers { for vm in controller.vms { listed[vm] = record.info.id } }
        }
        let now = self.now
        planner.onSummaries(listing: Set(listed.keys), now: now)
        for id in book.expire(nowMillis: Self.wallMillis) { try? store?.deleteTask(id) }
        let recentStarts = book.recentlyStarted(since: Self.wallMillis - TaskBook.millis(Self.reportGrace)).values
        let recentKeys = Set(recentStarts.map(\.key))
        reported = reported.intersection(recentKeys).union(recentStarts.filter { listed[$0.vm.id] != nil }.map(\.key))
        let recent = book.recentlyStarted(since: Self.wallMillis - TaskBook.millis(Self.reportGrace))
        let inUse = Set(listed.keys).union(book.pendingVMs.keys).union(recent.keys).union(heldAddresses)
        reclaimNetworkAddresses(inUse: inUse, now: now)
        // Only floating IPs move; most ticks of most clusters have none to look at.
        if !networkBook.floatingIPs.isEmpty { Task { await self.reconcileFloatingIPs() } }
        guard planner.pool != nil else { return }
        if planner.reclaimAddresses(inUse: inUse, now: now), let pool = planner.pool { try? store?.saveIPPool(pool) }
    }

    // MARK: - High availability (FailoverCoordinator)

    /// The templates of VMs submitted with `ha: true`, by VM name (the latest submission of a name wins): what a
    /// restart on another host submits again.
    func highlyAvailableTemplates() -> [String: VirtualMachineTemplate] {
        var templates: [String: VirtualMachineTemplate] = [:]
        for record in book.records.values.sorted(by: { $0.createdAt < $1.createdAt }) {
            // A VM whose submission failed was never started: nothing to protect.
            for vm in record.vms where !(vm.isFinal && vm.meta.status == .error) { templates[vm.id] = vm.haTemplate }
        }
        return templates
    }

    enum RestartOutcome: Equatable {
        case pending, running
        case failed(String)
        /// No such task (it expired, or was never recorded).
        case unknownTask
    }

    /// Where one VM of a restart's submission stands.
    func outcome(of vm: String, in task: String) -> RestartOutcome {
        guard let entry = book.records[task]?.vms.first(where: { $0.id == vm }) else { return .unknownTask }
        guard entry.isFinal else { return .pending }
        if entry.meta.status == .error {
            return .failed([entry.meta.errorCode.rawValue, entry.meta.errorMessage ?? ""].filter { !$0.isEmpty }.joined(separator: ": "))
        }
        return .running
    }

    /// The unfinished submission starting a VM of this name, if any (a restart an earlier leader submitted).
    func pendingTask(for vm: String) -> String? { book.pendingVMs[vm] }

    /// VMs started in the last few seconds that no heartbeat has listed since, and the controller each started on.
    func recentStarts() -> [String: NodeID] {
        let cutoff = Self.wallMillis - TaskBook.millis(Self.reportGrace)
        var starts: [String: NodeID] = [:]
        for (vm, start) in book.recentlyStarted(since: cutoff) where !reported.contains(start.key) {
            if let controller = start.vm.meta.virtualMachineLocation.localControllerId { starts[vm] = controller }
        }
        return starts
    }

    func holdAddresses(_ names: Set<String>) { heldAddresses = names }

    func address(of vm: String) -> String? {
        planner.pool?.allocated.first { $0.value == vm }.map { IPPool.format($0.key) }
    }
}
