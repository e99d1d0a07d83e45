import ClusterAPI
import ClusterCore
import ClusterTransport
import ClusterWire
import Foundation
import Logging
import NIOHTTP1

/// The leader's kvm-apps (seed 000): the native, declarative face of the submission pipeline. A create becomes
/// one submission (`SubmissionCoordinator.submit(_:app:)`); operations fan out to the app's VMs through their
/// group managers; statuses are read from the controllers. Rules and statuses are `KVMAppBook`'s; this actor
/// does the IO and keeps the records in the cluster record store, so the next leader has them.
actor KVMAppCoordinator {
    typealias Managers = @Sendable () async -> [NodeID: GroupLeaderState.ManagerRecord]
    /// Every VM of the cluster with its current status and XML, as the controllers report it.
    typealias LiveVMs = @Sendable () async -> [VirtualMachineMetaData]

    let submissions: SubmissionCoordinator
    let store: (any ClusterRecordStore)?
    let managers: Managers
    let liveVMs: LiveVMs
    let peers = PeerClient(timeout: .seconds(60))
    let log: Logger
    private var book = KVMAppBook()
    /// The records are read on first use; a store that cannot be read refuses every request rather than
    /// overwriting apps it could not see.
    private var loaded: Result<Void, DozeError>?
    private var active = true
    /// Apps whose submission is under way (their tasks are pending, but no submission id is recorded yet).
    private var submitting: Set<String> = []
    private var refreshing = false

    init(submissions: SubmissionCoordinator, store: (any ClusterRecordStore)?, logger: Logger,
         managers: @escaping Managers, liveVMs: @escaping LiveVMs) {
        self.submissions = submissions
        self.store = store
        self.managers = managers
        self.liveVMs = liveVMs
        self.log = logger
    }

    static var wallMillis: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// Leadership lost: nothing more is written (the next leader owns the records now).
    func stop() { active = false }

    private func ready() async throws(DozeError) {
        guard active else { throw DozeError(.unavailable, "this node is no longer the group leader") }
        if loaded == nil {
            do {
                book = KVMAppBook(try await store?.loadApps() ?? [])
                loaded = .success(())
                if !book.apps.isEmpty { log.info("kvm-apps read back", metadata: ["doze/apps": "\(book.apps.count)"]) }
            } catch {
                log.error("cannot read the kvm-app records", metadata: ["error": "\(error)"])
                loaded = .failure(DozeError(.unavailable, "cannot read the kvm-app records: \(error)"))
            }
        }
        if case .failure(let failure) = loaded { throw failure }
    }

    private func persist() throws(DozeError) {
        guard active else { return }
        do { try store?.saveApps(Array(book.apps.values)) } catch {
            throw DozeError(.unavailable, "cannot record the kvm-apps in the cluster records: \(error)")
        }
    }

    private func persistLogging() {
        do { try persist() } catch { log.error("cannot record the kvm-apps", metadata: ["error": "\(error.message)"]) }
    }

    // MARK: - Create

    func create(_ app: KVMAppID, _ spec: KVMAppSpec, tenant: String? = nil) async throws(DozeError) -> String {
        try await ready()
        let current = await managers()
        try await ready()
        let hosts = current.values.flatMap(\.controllers).map { controller in
            let summary = controller.summary
            return KVMAppHost(id: controller.id, hostname: controller.control.host,
                              total: HostUsage(vcpus: Int(summary.total.vcpus), memoryMiB: Int(summary.total.memoryKiB / 1024)),
                              free: summary.free)
        }.sorted { $0.id < $1.id }
        let plan = try book.plan(app, spec, hosts: hosts)
        // Booked before the first await, so a concurrent create of the same id is refused.
        let taskIDs = plan.map { String(UUID().uuidString.lowercased().filter { $0 != "-" }.prefix(12)) + "." + $0.name }
        book.reserve(app, spec, taskIDs: taskIDs, names: plan.map(\.name), nowMillis: Self.wallMillis)
        book.setTenant(of: app.id, tenant)
        do { try persist() } catch {
            book.cancel(app.id)
            throw error
        }
        let templates = plan.map { vm in
            var template = VirtualMachineTemplate(vcpus: spec.cpus, memory: spec.memoryMiB * 1024, imageId: spec.imageURI, name: vm.name, hostId: vm.controller)
            template.vncPassword = spec.vncPassword
            if spec.diskGiB > 0 { template.disks = [spec.diskGiB] }
            if spec.ha == true { template.ha = true }
            template.networks = spec.networks
            template.tenant = tenant
            return template
        }
        submitting.insert(app.id)
        defer { submitting.remove(app.id) }
        let submission: String
        do {
            submission = try await submissions.submit(VirtualClusterSubmissionRequest(virtualMachineTemplates: templates), app: app.id)
        } catch {
            // Refused whole (a name taken, no record store): the app never existed.
            book.cancel(app.id)
            persistLogging()
            throw error
        }
        book.submitted(app.id, submission: submission)
        persistLogging()
        log.info("kvm-app created", metadata: ["doze/app": "\(app.id)", "doze/task": "\(submission)", "doze/vms": "\(plan.count)"])
        return app.id
    }

    /// Copies the pipeline's verdicts into apps still being created.
    private func refreshCreations() async {
        guard !refreshing else { return }
        refreshing = true
        defer { refreshing = false }
        var changed = false
        for record in book.apps.values where record.isCreating && !submitting.contains(record.id) {
            var outcomes: [String: KVMAppTask.Creation] = [:]
            guard let submission = record.submission else {
                // The leader that booked it died before the submission was recorded.
                for task in record.tasks { outcomes[task.name] = .failed("the group leader changed before this VM's creation was recorded; delete the app and create it again") }
                changed = book.onCreation(record.id, outcomes: outcomes, nowMillis: Self.wallMillis) || changed
                continue
            }
            do {
                let document = try await submissions.document(submission)
                for meta in document.response.virtualMachineMetaData {
                    let name = meta.virtualMachineLocation.virtualMachineId
                    switch meta.status {
                    case .unknown: outcomes[name] = .pending
                    case .error: outcomes[name] = .failed(meta.errorMessage ?? meta.errorCode.rawValue)
                    default:
                        // Started means placed: a VM past UNKNOWN status always names its controller.
                        guard let controller = meta.virtualMachineLocation.localControllerId else { outcomes[name] = .pending; continue }
                        outcomes[name] = .started(controller: controller, ipAddress: meta.ipAddress)
                    }
                }
            } catch {
                guard error.kind == .notFound else { continue }
                for task in record.tasks { outcomes[task.name] = .failed("the creation's submission record \(submission) is gone (expired or lost)") }
            }
            changed = book.onCreation(record.id, outcomes: outcomes, nowMillis: Self.wallMillis) || changed
        }
        if changed { persistLogging() }
    }

    /// Heartbeat-paced: apps being created follow their submission without anyone asking.
    func tick() async {
        guard active, case .success = loaded, book.apps.values.contains(where: \.isCreating) else { return }
        await refreshCreations()
    }

    // MARK: - Reading

    /// Where every VM is: the controllers' own answers, and the heartbeats' view for VMs whose status could not be read.
    private struct Snapshot {
        var live: [String: VirtualMachineMetaData] = [:]
        var statuses: [String: VMStatus] = [:]
        var listed: Set<String> = []
        var controllers: Set<String> = []

        func presence(_ task: KVMAppTask) -> KVMAppPresence {
            .of(task, live: statuses, listed: listed, controllers: controllers)
        }
    }

    private func snapshot() async -> Snapshot {
        async let metas = liveVMs()
        let current = await managers()
        var state = Snapshot()
        for record in current.values {
            for controller in record.controllers {
                state.listed.formUnion(controller.vms)
                state.controllers.insert(controller.id)
            }
        }
        for meta in await metas {
            state.live[meta.virtualMachineLocation.virtualMachineId] = meta
            state.statuses[meta.virtualMachineLocation.virtualMachineId] = meta.status
        }
        return state
    }

    private func entry(_ record: KVMAppRecord, _ state: Snapshot) -> KVMAppEntry {
        var counts: [String: Int] = [:]
        for task in record.tasks { counts[KVMAppBook.status(of: task, presence: state.presence(task)).status, default: 0] += 1 }
        return KVMAppEntry(record, tasksStatus: counts, operationStatus: book.operationStatus(record.id))
    }

    func list() async throws(DozeError) -> [KVMAppEntry] {
        try await ready()
        await refreshCreations()
        let state = await snapshot()
        let principal = RequestPrincipal.current
        return book.apps.values.filter { principal.sees($0.tenant) }.sorted { $0.id < $1.id }.map { entry($0, state) }
    }

    /// An app of the asking tenant's (another tenant's is "no such app").
    private func requireVisible(_ id: String) throws(DozeError) {
        guard let record = book.apps[id], RequestPrincipal.current.sees(record.tenant) else { throw DozeError(.notFound, "no kvm-app '\(id)'") }
    }

    func tasks(_ id: String) async throws(DozeError) -> [KVMAppTaskEntry] {
        try await ready()
        try requireVisible(id)
        await refreshCreations()
        let state = await snapshot()
        guard let record = book.apps[id] else { throw DozeError(.notFound, "no kvm-app '\(id)'") }
        return record.tasks.map { task in
            let presence = state.presence(task)
            let (status, errmsg) = KVMAppBook.status(of: task, presence: presence)
            var agent = "", ip = "", uuid = "", domain = "", vnc = ""
            if case .started(let controller, let address) = task.creation {
                agent = controller
                ip = address
            }
            if let meta = state.live[task.name] {
                agent = meta.virtualMachineLocation.localControllerId ?? agent
                if !meta.ipAddress.isEmpty { ip = meta.ipAddress }
                uuid = KVMAppBook.domainUUID(inDomainXML: meta.xmlRepresentation)
                domain = task.name
                if let display = KVMAppBook.vncDisplay(inDomainXML: meta.xmlRepresentation),
                   let host = meta.virtualMachineLocation.localControllerControlDataAddress {
                    vnc = "\(host.address):\(display)"
                }
            }
            return KVMAppTaskEntry(id: task.id, name: task.name, agentId: agent, executorId: record.submission ?? "", domainUuid: uuid,
                                   domainName: domain, opstatus: book.opStatus(of: task, in: id, presence: presence), status: status,
                                   errmsg: errmsg, createdAt: task.createdAt, updatedAt: task.updatedAt, ipAddr: ip, vncAddr: vnc)
        }
    }

    // MARK: - Operations

    /// Applies `operation` to every VM of the app at once and waits for each answer. VMs already as wanted are
    /// left alone. The app (nil once deleted) when every VM ended as wanted; otherwise an error naming the VMs
    /// that did not, whose outcome also shows in their `opstatus`/`errmsg`.
    func perform(_ operation: KVMAppOperation, on id: String) async throws(DozeError) -> KVMAppEntry? {
        try await ready()
        try requireVisible(id)
        await refreshCreations()
        let record = try book.begin(operation, on: id)
        let state = await snapshot()
        var failures: [String: DozeError] = [:]
        var sends: [(vm: String, ops: [VMOperation])] = []
        for task in record.tasks {
            switch KVMAppBook.action(operation, for: task, presence: state.presence(task)) {
            case .skip: break
            case .send(let ops): sends.append((task.name, ops))
            case .fail(let why): failures[task.name] = DozeError(.conflict, why)
            }
        }
        let results = await withTaskGroup(of: (String, DozeError?).self) { group in
            for (vm, ops) in sends {
                group.addTask {
                    for op in ops { if let failure = await self.control(vm, op) { return (vm, failure) } }
                    return (vm, nil)
                }
            }
            var out: [(String, DozeError?)] = []
            for await result in group { out.append(result) }
            return out
        }
        for case (let vm, let error?) in results { failures[vm] = error }
        book.finish(operation, on: id, failures: failures.mapValues(\.message), targeted: record.tasks.map(\.name), nowMillis: Self.wallMillis)
        persistLogging()
        log.info("kvm-app operation done", metadata: ["doze/app": "\(id)", "doze/op": "\(operation.rawValue)",
                                                      "doze/vms": "\(sends.count)", "doze/failed": "\(failures.count)"])
        if let first = failures.keys.sorted().first {
            throw DozeError(failures[first]!.kind, book.apps[id]?.errmsg ?? "\(operation.rawValue) failed for \(failures.count) VMs; \(first): \(failures[first]!.message)")
        }
        guard let after = book.apps[id] else {
            await awaitUnlisted(record.tasks.map(\.name))
            return nil
        }
        return entry(after, await snapshot())
    }

    /// Waits (a few seconds at most) until the pipeline no longer holds the destroyed VMs' names (heartbeats
    /// still listing them, or a start younger than its report grace), so the app can be created again at once.
    private func awaitUnlisted(_ vms: [String]) async {
        let deadline = ContinuousClock.now + SubmissionCoordinator.reportGrace + .seconds(2)
        while ContinuousClock.now < deadline {
            let taken = await submissions.takenNames(await managers())
            if !vms.contains(where: { taken[$0] != nil }) { return }
            try? await Task.sleep(for: .milliseconds(50))
        }
    }

    /// One VM operation through the group manager holding the VM; nil when it succeeded.
    private func control(_ vm: String, _ operation: VMOperation) async -> DozeError? {
        let control: VMControl
        switch operation {
        case .start: control = .start
        case .suspend: control = .suspend
        case .resume: control = .resume
        case .shutdown: control = .shutdown
        case .destroy: control = .destroy
        case .reboot: control = .reboot
        case .resize, .snapshot, .revert: return DozeError(.badRequest, "kvm-apps do not \(operation.rawValue) VMs")
        }
        let gone: (DozeError) -> DozeError? = { operation == .destroy && $0.kind == .notFound ? nil : $0 }
        let found: VirtualMachineDiscoveryResponse
        do { found = try await submissions.discover(vm) } catch { return gone(error) }
        let manager = found.groupManagerEndpoint
        do {
            _ = try await peers.call(.POST, manager, "/groupmanager?\(control.snoozeOperation)", body: found.location(vm: vm), as: String.self)
            return nil
        } catch {
            return gone(remoteError(error, "the group manager at \(manager) holding VM '\(vm)' did not answer"))
        }
    }
}
