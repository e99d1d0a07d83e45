import ClusterAPI
import ClusterCore
import ClusterTransport
import ClusterWire
import Foundation
import Logging
import NIOHTTP1

/// The group leader, for one term (Snooze's GL). Everything the leader does starts here:
/// - membership: managers join it and send summaries of their controllers (`GroupLeaderState` keeps the books,
///   this actor carries out its directives) and it assigns each joining controller a manager;
/// - the cluster-wide views (`getLocalControllerList`, `getGroupLeaderRepositoryInformation`, …);
/// - submissions (`SubmissionCoordinator`), kvm-apps (`KVMAppCoordinator`), migrations and drains
///   (`MigrationCoordinator`), each a service of this role that stops with it.
/// As in Snooze, the leader manages no local controllers itself.
actor LeaderRole {
    let context: GroupManagerContext
    private var state: GroupLeaderState
    private let electedAt: MonotonicTime
    /// The records of this term (directory or etcd); nil when they could not be opened.
    private let store: (any ClusterRecordStore)?
    /// The events stream (`GET /v1/events`) and the view it is derived from (`LeaderRole+Events.swift`).
    let events: EventJournal
    var observer = ClusterObserver()
    var observing = false
    private var ticks = 0

    private var id: NodeID { context.id }
    private var cluster: ClusterSettings { context.cluster }
    private var log: Logger { context.log }
    private var now: MonotonicTime { context.now }

    // The services ask the role for the managers' books, so they are made once the role exists.
    lazy var submissions = SubmissionCoordinator(
        settings: cluster.submission, store: store, settleTime: cluster.heartbeatInterval * 3, logger: log, metrics: cluster.metrics
    ) { [weak self] in await self?.managers() ?? [:] }
    private lazy var apps = KVMAppCoordinator(
        submissions: submissions, store: store, logger: log,
        managers: { [weak self] in await self?.managers() ?? [:] },
        liveVMs: { [weak self] in await self?.virtualMachineDescriptions().virtualMachines ?? [] })
    lazy var migrations = MigrationCoordinator(
        limitPerHost: cluster.submission.migrationsPerHost, submissions: submissions, store: store, logger: log, metrics: cluster.metrics,
        managers: { [weak self] in await self?.managers() ?? [:] },
        moved: { [weak self] move in await self?.applyMove(move) })
    lazy var rebalancing = RebalancingCoordinator(
        settings: cluster.rebalancing, migrations: migrations, submissions: submissions, logger: log,
        managers: { [weak self] in await self?.managers() ?? [:] },
        usage: { [weak self] in await self?.clusterUsage() ?? [] })
    lazy var energy = EnergyCoordinator(settings: cluster.energy, booksLag: (cluster.controllerTimeout + cluster.leaderManagerTimeout) * 2,
                                        store: store, migrations: migrations, logger: log,
                                        managers: { [weak self] in await self?.managers() ?? [:] })
    lazy var failover = FailoverCoordinator(
        settings: cluster.highAvailability, submissions: submissions, store: store, settleTime: cluster.heartbeatInterval * 3,
        logger: log) { [weak self] in await self?.managers() ?? [:] }

    /// Tenants and API tokens (the node's token checker is updated by it).
    lazy var auth = AuthCoordinator(store: store, tokens: context.tokens, logger: log)

    /// Seed 004's networks live with the submissions (`SubmissionCoordinator+Networks.swift`).
    var networkService: SubmissionCoordinator { submissions }

    init(context: GroupManagerContext, term: Term, store: (any ClusterRecordStore)?) {
        self.context = context
        var settings = GroupLeaderState.Settings()
        settings.managerTimeout = context.cluster.leaderManagerTimeout
        settings.assignment = context.cluster.assignment
        self.state = GroupLeaderState(me: LeaderInfo(id: context.id, term: term, control: context.me.control, heartbeat: context.me.heartbeat),
                                      settings: settings)
        self.electedAt = context.now
        self.store = store
        self.events = EventJournal(store: store, capacity: context.cluster.eventsKept, logger: context.log)
    }

    /// Reads back what earlier leaders recorded (in the background: calls wait for it) and announces the term.
    func start() {
        let submissions = self.submissions, migrations = self.migrations, rebalancing = self.rebalancing, energy = self.energy
        let failover = self.failover, events = self.events
        _ = apps   // made with the others: every service of the term exists before the first call or tick
        events.record([ClusterEvent(kind: .leaderElected, term: state.me.term, leader: id)])
        Task { await events.load() }
        Task {
            await submissions.setWakeForRoom { limit in await energy.wakeForRoom(within: limit) }
            await submissions.load()
            await submissions.takeOver()
        }
        Task { await migrations.load() }
        Task { await rebalancing.start() }
        Task { await energy.start() }
        Task { await failover.load() }
        announce()
    }

    func stop() async {
        await submissions.stop()
        await apps.stop()
        await migrations.stop()
        await rebalancing.stop()
        await energy.stop()
        await failover.stop()
        await events.stop()
    }

    func managers() -> [NodeID: GroupLeaderState.ManagerRecord] { state.managers }

    func selfDescription() -> GroupManagerDescription {
        GroupManagerDescription(context.me, term: state.me.term, isLeader: true)
    }

    // MARK: - Heartbeats

    func tick() {
        for directive in state.onTick(now: now) { apply(directive) }
        announce()
        let submissions = self.submissions, apps = self.apps, failover = self.failover
        Task { await submissions.tick() }
        Task { await apps.tick() }
        Task { await failover.tick() }
        // The events' view: every other tick, once the managers have had time to join (the first view is the baseline).
        ticks += 1
        if ticks % 2 == 0, now - electedAt >= cluster.leaderManagerTimeout * 2 { observe() }
    }

    func receive(_ decoded: HeartbeatCodec.Decoded) {
        // Managers' own messages, hellos and controllers' heartbeats are not addressed to the leader.
        guard case .managerSummary(let manager, let term, let controllers) = decoded.message else { return }
        for directive in state.onManagerSummary(manager, term: term, controllers: controllers, now: now) { apply(directive) }
    }

    /// The leader's announcement: to the bootstraps (which relay it to newcomers), every manager and controller
    /// it knows, and the multicast group when one is configured.
    private func announce() {
        var targets = Set(cluster.bootstraps)
        for record in state.managers.values {
            targets.insert(record.info.heartbeat)
            for controller in record.controllers { targets.insert(controller.heartbeat) }
        }
        if let group = cluster.multicast { targets.insert(group) }
        let message = HeartbeatMessage.leader(state.me)
        let link = context.link
        Task { await link.send(message, to: targets) }
    }

    private func apply(_ directive: GroupLeaderState.Directive) {
        if let event = ClusterEvent.membership(directive) { events.record([event]) }
        switch directive {
        case .managerJoined(let manager):
            log.info("group manager joined", metadata: ["doze/gm": "\(manager.id)", "doze/address": "\(manager.control)"])
        case .managerDown(let manager, let controllers):
            log.warning("group manager down; its controllers re-join elsewhere",
                        metadata: ["doze/gm": "\(manager.id)", "doze/lcs": "\(controllers.count)"])
        case .controllerDown(let controller, let managerID):
            log.warning("local controller down", metadata: ["doze/lc": "\(controller.id)", "doze/gm": "\(managerID)"])
            let failover = self.failover
            Task { await failover.controllerDown(controller) }
        case .ignoredStaleTerm:
            let link = context.link
            Task { await link.count("staleTerm") }
        }
    }

    // MARK: - Membership (HTTP)

    func joinGroupLeader(_ request: JoinLeaderRequest) throws(DozeError) {
        guard request.term == state.me.term else {
            throw DozeError(.conflict, "join for term \(request.term), but this leader holds term \(state.me.term)")
        }
        for directive in state.onManagerJoin(request.manager, controllers: request.controllers, now: now) { apply(directive) }
        announce()
    }

    /// Which manager a joining (or re-joining) controller goes to: `GroupLeaderState.assign` decides.
    func assignLocalController(_ request: AssignRequest) throws(DozeError) -> AssignedGroupManager {
        // Managers join on the first announcement; assigning before they could would pile every controller
        // onto whichever manager answered first.
        guard now - electedAt >= cluster.heartbeatInterval * 2 else {
            throw DozeError(.unavailable, "the leader was just elected; group managers are still joining")
        }
        guard let manager = state.assign(request.controller, previous: request.previousManager, avoid: request.avoidManager) else {
            throw DozeError(.unavailable, "no group manager has joined the leader yet")
        }
        var assigned = AssignedGroupManager(localControllerId: request.controller.id,
                                            groupManager: GroupManagerDescription(manager, term: state.me.term, isLeader: false))
        // A host fenced while it held HA VMs that run elsewhere now destroys its copies before it reports any VM.
        let stale = failover.staleVMs(on: request.controller.id)
        if !stale.isEmpty { assigned.staleVirtualMachines = stale }
        return assigned
    }

    // MARK: - Views

    func localControllerList() async -> LocalControllerList {
        let records = Array(state.managers.values)
        let described = await describeControllers(of: records)
        return LocalControllerList(localControllers: records.flatMap { described[$0.info.id] ?? [] }.sorted { $0.id < $1.id })
    }

    func groupLeaderRepository() async -> GroupLeaderRepositoryInformation {
        let stamp = Int64(Date().timeIntervalSince1970 * 1000)
        let term = state.me.term
        let records = state.managers.values.sorted { $0.info.id < $1.info.id }
        let described = await describeControllers(of: records)
        let managers = records.map { record in
            GroupManagerDescription(record.info, term: term, isLeader: false, controllers: described[record.info.id] ?? [],
                                    summary: record.summary, timeStamp: stamp)
        }
        return GroupLeaderRepositoryInformation(groupManagerDescriptions: managers, groupLeader: selfDescription())
    }

    func groupManagerDescription(id: String) async throws(DozeError) -> GroupManagerDescription {
        if id == self.id { return selfDescription() }
        guard let record = state.managers[id] else { throw DozeError(.notFound, "unknown group manager '\(id)'") }
        let term = state.me.term
        let described = await describeControllers(of: [record])
        return GroupManagerDescription(record.info, term: term, isLeader: false, controllers: described[id] ?? [],
                                       summary: record.summary, timeStamp: Int64(Date().timeIntervalSince1970 * 1000))
    }

    /// The leader's views of controllers, VMs included: each manager describes its own (asked now, in parallel,
    /// within `viewTimeout`), so a listed VM carries its real status, IP, capacity and location. A manager that
    /// does not answer in time has its controllers described from its last summary: VM names, located completely.
    private func describeControllers(of records: [GroupLeaderState.ManagerRecord]) async -> [NodeID: [LocalControllerDescription]] {
        let peers = context.peers
        let timeout = ManagerRole.viewTimeout
        // A manager whose controllers run no VM has nothing to add to the books.
        let withVMs = records.filter { record in record.controllers.contains { !$0.vms.isEmpty } }
        let answers = await askEach(withVMs, id: \.info.id) { record in
            try? await peers.call(.POST, record.info.control, "/groupmanager?getGroupManagerRepositoryInformation",
                                  body: "0", as: GroupManagerRepositoryInformation.self, timeout: timeout)
        }
        var described: [NodeID: [LocalControllerDescription]] = [:]
        for record in records {
            let own = Dictionary((answers[record.info.id]?.localControllerDescriptions ?? []).map { ($0.id, $0) },
                                 uniquingKeysWith: { first, _ in first })
            described[record.info.id] = record.controllers.map { controller in
                guard let answered = own[controller.id] else { return LocalControllerDescription(controller, manager: record.info) }
                // The leader's books place the controller; the manager's answer says what its VMs are.
                return LocalControllerDescription(controller, manager: record.info, hypervisorURI: answered.hypervisorSettings?.uri,
                                                  virtualMachines: Array(answered.virtualMachineMetaData.values))
            }
        }
        return described
    }

    /// Every VM of the cluster: each manager lists its own.
    func virtualMachineDescriptions() async -> VirtualMachineList {
        let managers = state.managers.values.map(\.info)
        let peers = context.peers
        let lists = await askEach(managers, id: \.id) { manager in
            try? await peers.call(.POST, manager.control, "/groupmanager?getVirtualMachineDescriptions", body: "{}",
                                  as: VirtualMachineList.self, timeout: .seconds(10)).virtualMachines
        }
        var list = VirtualMachineList(merging: lists.values)
        // VMs of dead hosts stay in the view, UNKNOWN, until they run again somewhere or their host returns.
        let listed = Set(list.virtualMachines.map(\.virtualMachineLocation.virtualMachineId))
        list.virtualMachines += await failover.unknownVMs().filter { !listed.contains($0.virtualMachineLocation.virtualMachineId) }
        // Floating IPs are the leader's books, not the host's: added here.
        let floating = await submissions.floatingIPsByVM()
        for index in list.virtualMachines.indices {
            if let addresses = floating[list.virtualMachines[index].virtualMachineLocation.virtualMachineId] {
                list.virtualMachines[index].floatingIPs = addresses
            }
        }
        return list
    }

    // MARK: - Submissions: placement over managers, addresses, records and dispatch are SubmissionCoordinator's

    func startVirtualCluster(_ request: VirtualClusterSubmissionRequest) async throws(DozeError) -> String {
        do throws(DozeError) { return try await submissions.submit(request) } catch {
            cluster.metrics?.submissionEnded(.rejected, after: nil)
            throw error
        }
    }

    func virtualClusterTask(id: String, wait: Duration) async throws(DozeError) -> VirtualClusterTaskDocument {
        try await submissions.document(id, wait: wait)
    }

    func discoverVirtualMachine(_ vm: String) async throws(DozeError) -> VirtualMachineDiscoveryResponse {
        do { return try await submissions.discover(vm) } catch where error.kind == .notFound {
            if let reason = await failover.unknownReason(vm) { throw DozeError(.conflict, "VM '\(vm)' is UNKNOWN: \(reason)") }
            throw error
        }
    }

    // MARK: - kvm-apps (KVMAppCoordinator)

    /// Made for the asking token's tenant, within its quota.
    func createApp(_ app: KVMAppID, _ request: KVMAppCreateRequest) async throws(DozeError) -> KVMAppCreated {
        let spec = try request.spec()
        let tenant = RequestPrincipal.current.scope
        if let tenant, let owner = try await auth.tenant(tenant), owner.quota != .unlimited {
            try owner.admit(TenantUsage(vms: spec.count, vcpus: spec.count * spec.cpus, memoryMiB: spec.count * spec.memoryMiB),
                            to: await tenantUsage()[tenant] ?? TenantUsage())
        }
        return KVMAppCreated(id: try await apps.create(app, spec, tenant: tenant))
    }

    func listApps() async throws(DozeError) -> [KVMAppEntry] { try await apps.list() }

    func appTasks(_ id: String) async throws(DozeError) -> [KVMAppTaskEntry] { try await apps.tasks(id) }

    func operateApp(_ id: String, _ operation: KVMAppOperation) async throws(DozeError) -> KVMAppEntry? {
        try await apps.perform(operation, on: id)
    }

    // MARK: - Migrations and drains (MigrationCoordinator)

    func migrate(_ request: MigrationSubmission) async throws(DozeError) -> MigrationRecord { try await migrations.migrate(request) }

    func migration(id: String, wait: Duration) async throws(DozeError) -> MigrationRecord { try await migrations.record(id, wait: wait) }

    func migrationList() async -> MigrationList { await migrations.list() }

    func abortMigration(id: String) async throws(DozeError) -> MigrationRecord { try await migrations.abort(id) }

    /// The hosts with their use as the managers' windows estimate it.
    func hostList() async -> HostList {
        var list = await migrations.hostList()
        let usage = Dictionary(await clusterUsage().map { ($0.localControllerId, $0) }, uniquingKeysWith: { first, _ in first })
        for index in list.hosts.indices {
            guard let host = usage[list.hosts[index].id] else { continue }
            list.hosts[index].vcpusInUse = host.vcpusInUse
            list.hosts[index].memoryUsedMiB = host.memoryUsedMiB
            list.hosts[index].cpuFraction = host.cpuFraction
            list.hosts[index].memoryFraction = host.memoryFraction
        }
        guard cluster.energy.enabled else { return list }
        for index in list.hosts.indices {
            let id = list.hosts[index].id
            list.hosts[index].power = await energy.power(of: id).rawValue
            list.hosts[index].powerError = await energy.lastFailure(of: id)
        }
        let listed = Set(list.hosts.map(\.id))
        for record in await energy.records() where !listed.contains(record.id) {
            var entry = HostEntry(id: record.id, address: NetworkAddress(address: record.address.host, port: record.address.port),
                                  groupManagerId: record.manager, draining: record.drained, vms: [],
                                  vcpus: Double(record.capacity.vcpus), vcpusRequested: 0,
                                  memoryMiB: Double(record.capacity.memoryMiB), memoryMiBRequested: 0, migrations: 0)
            entry.power = record.power.rawValue
            entry.powerError = record.lastError
            list.hosts.append(entry)
        }
        list.hosts.sort { $0.id < $1.id }
        return list
    }

    func drainHost(_ id: String, options: MigrationOptions?) async throws(DozeError) -> DrainReport {
        try await migrations.drain(id, options: options)
    }

    func undrainHost(_ id: String) async throws(DozeError) -> DrainReport { try await migrations.undrain(id) }

    /// A VM moved: tell the managers of both hosts, then show the move in the leader's own view. In that order, so
    /// that a manager's summary sent before it heard of the move cannot put the VM back in the leader's view.
    private func applyMove(_ move: VirtualMachineMove) async {
        let targets = state.managers.values.filter { $0.controllers.contains { $0.id == move.from || $0.id == move.to } }.map(\.info.control)
        let peers = context.peers
        await withTaskGroup(of: Void.self) { group in
            for target in targets {
                group.addTask { _ = try? await peers.send(.POST, target, "/groupmanager?virtualMachineMoved", body: move, timeout: .seconds(2)) }
            }
        }
        state.moveVM(move.vm, from: move.from, to: move.to, demand: move.demand)
        // A bound floating IP follows its VM now rather than on the next tick.
        let submissions = self.submissions
        Task { await submissions.reconcileFloatingIPs() }
    }
}
