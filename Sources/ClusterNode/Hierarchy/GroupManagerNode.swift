import ClusterAPI
import ClusterCore
import ClusterTransport
import ClusterWire
import Foundation
import Logging
import NIOHTTP1

/// A group-manager process. It campaigns for leadership; while it leads it runs the group-leader logic
/// (and, as in Snooze, manages no local controllers); otherwise it follows the leader and manages the local
/// controllers the leader assigns to it. The logic lives in `GroupLeaderState` / `GroupManagerState`;
/// this actor feeds them messages and ticks and carries out their directives.
public actor GroupManagerNode: GroupManagerBackend {
    enum Mode {
        case manager(GroupManagerState)
        case leader(GroupLeaderState)
    }

    public nonisolated let id: NodeID
    private(set) var me: ManagerInfo
    let cluster: ClusterSettings
    let election: any LeaderElection
    let link: HeartbeatLink
    let peers = PeerClient(timeout: .seconds(1))
    let log: Logger
    private let clock = ContinuousClock()
    private let started: ContinuousClock.Instant
    var mode: Mode
    private var leadership: (any Leadership)?
    /// What each managed controller last said of its VMs (when it joined, or when a view last asked it), and when.
    private var controllerVMs: [NodeID: [VirtualMachineMetaData]] = [:]
    private var controllerVMsAt: [NodeID: MonotonicTime] = [:]
    private var controllerHypervisors: [NodeID: String] = [:]
    private var joinInFlight = false
    private(set) var electedAt: MonotonicTime = .zero

    // Manager side of submissions (GroupManagerNode+VMs.swift).
    /// Placement over this manager's controllers; a reservation lasts until the controller's heartbeat lists the VM.
    var controllerPlacement: Placement
    var reservedAt: [String: MonotonicTime] = [:]
    /// When the controller answered a reserved VM's start; its next heartbeat after that reflects the VM.
    var startAnsweredAt: [String: MonotonicTime] = [:]
    /// VMs being started, by id: a repeated request (a new leader re-asking) waits for the same start.
    var vmStarts: [String: Task<VirtualMachineMetaData, Never>] = [:]
    /// Recent outcomes, by VM id, so a re-asked start answers at once instead of placing the VM again.
    var vmOutcomes: [String: (meta: VirtualMachineMetaData, at: MonotonicTime)] = [:]
    // Leader side (Submission/SubmissionCoordinator.swift).
    var coordinator: SubmissionCoordinator?
    /// Leader side of kvm-apps (Submission/KVMAppCoordinator.swift, GroupManagerNode+Apps.swift).
    var apps: KVMAppCoordinator?
    /// Leader side of migrations and drains (Submission/MigrationCoordinator.swift, GroupManagerNode+Migration.swift).
    var migrations: MigrationCoordinator?
    /// Opens the records of one term of leadership (the backend's other half).
    let openRecords: @Sendable (Term, Logger) throws -> any ClusterRecordStore

    init(id: NodeID, control: Endpoint, link: HeartbeatLink, cluster: ClusterSettings, backend: CoordinationBackend, logger: Logger) {
        self.id = id
        self.me = ManagerInfo(id: id, control: control, heartbeat: link.channel.localEndpoint)
        self.cluster = cluster
        self.election = backend.election
        self.openRecords = backend.openRecords
        self.link = link
        var log = logger
        log[metadataKey: "doze/role"] = "gm"
        log[metadataKey: "doze/node"] = "\(id)"
        self.log = log
        self.started = clock.now
        self.mode = .manager(GroupManagerState(me: me, settings: Self.managerSettings(cluster)))
        self.controllerPlacement = Placement(policy: cluster.submission.placement)
    }

    static func managerSettings(_ c: ClusterSettings) -> GroupManagerState.Settings {
        var s = GroupManagerState.Settings()
        s.controllerTimeout = c.controllerTimeout
        s.leaderTimeout = c.leaderTimeout
        return s
    }

    var now: MonotonicTime { started.duration(to: clock.now) }

    public var isLeader: Bool {
        if case .leader = mode { return true }
        return false
    }

    // MARK: - Run

    /// The HTTP port is known only once the server listens (port 0 picks one).
    func setControl(_ endpoint: Endpoint) {
        me.control = endpoint
        if case .manager = mode { mode = .manager(GroupManagerState(me: me, settings: Self.managerSettings(cluster))) }
    }

    /// Campaigns, ticks and handles heartbeats until cancelled.
    func run() async {
        while me.control.port == 0 && !Task.isCancelled { try? await Task.sleep(for: .milliseconds(10)) }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.campaignLoop() }
            group.addTask {
                await self.link.drive(interval: self.cluster.heartbeatInterval,
                                      receive: { await self.receive($0) }, tick: { await self.tick() })
            }
            await group.next()
            group.cancelAll()
        }
        await leadership?.resign()
    }

    private func campaignLoop() async {
        while !Task.isCancelled {
            do {
                let won = try await election.campaign(candidate: id)
                becomeLeader(won)
                await won.lost()
                if Task.isCancelled { return }
                stepDown(reason: "leadership lost")
            } catch {
                if Task.isCancelled { return }
                log.warning("campaign failed, retrying", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .milliseconds(500))
            }
        }
    }

    private func becomeLeader(_ won: any Leadership) {
        leadership = won
        let info = LeaderInfo(id: id, term: won.term, control: me.control, heartbeat: me.heartbeat)
        var settings = GroupLeaderState.Settings()
        settings.managerTimeout = cluster.leaderManagerTimeout
        settings.assignment = cluster.assignment
        mode = .leader(GroupLeaderState(me: info, settings: settings))
        electedAt = now
        controllerVMs = [:]
        controllerVMsAt = [:]
        log.notice("elected group leader", metadata: ["doze/term": "\(won.term)"])
        startCoordinator(term: won.term)
        announce()
    }

    private func stepDown(reason: String) {
        log.warning("stepping down", metadata: ["reason": "\(reason)"])
        leadership = nil
        mode = .manager(GroupManagerState(me: me, settings: Self.managerSettings(cluster)))
        if let old = coordinator {
            coordinator = nil
            Task { await old.stop() }
        }
        if let old = apps {
            apps = nil
            Task { await old.stop() }
        }
        if let old = migrations {
            migrations = nil
            Task { await old.stop() }
        }
    }

    private func startCoordinator(term: Term) {
        var store: (any ClusterRecordStore)?
        do { store = try openRecords(term, log) } catch {
            log.error("cannot open the cluster records; submissions will not survive a failover", metadata: ["error": "\(error)"])
        }
        let coordinator = SubmissionCoordinator(
            settings: cluster.submission, store: store, settleTime: cluster.heartbeatInterval * 3, logger: log
        ) { [weak self] in await self?.currentManagers() ?? [:] }
        self.coordinator = coordinator
        Task {
            await coordinator.load()
            await coordinator.takeOver()
        }
        apps = KVMAppCoordinator(submissions: coordinator, store: store, logger: log,
                                 managers: { [weak self] in await self?.currentManagers() ?? [:] },
                                 liveVMs: { [weak self] in (try? await self?.virtualMachineDescriptions())?.virtualMachines ?? [] })
        let migrations = MigrationCoordinator(limitPerHost: cluster.submission.migrationsPerHost, submissions: coordinator, store: store, logger: log,
                                          managers: { [weak self] in await self?.currentManagers() ?? [:] },
                                          moved: { [weak self] move in await self?.applyMove(move) })
        self.migrations = migrations
        Task { await migrations.load() }
    }

    func currentManagers() -> [NodeID: GroupLeaderState.ManagerRecord] {
        guard case .leader(let state) = mode else { return [:] }
        return state.managers
    }

    private func tick() {
        let now = self.now
        switch mode {
        case .leader(var state):
            let directives = state.onTick(now: now)
            mode = .leader(state)
            for d in directives { apply(d) }
            announce()
            if let coordinator { Task { await coordinator.tick() } }
            if let apps { Task { await apps.tick() } }
        case .manager(var state):
            let directives = state.onTick(now: now)
            mode = .manager(state)
            for d in directives { apply(d) }
            heartbeat(state)
            pruneSubmissionBooks()
        }
    }

    /// The leader's announcement: to the bootstraps (which relay it to newcomers), every manager and controller
    /// it knows, and the multicast group when one is configured.
    private func announce() {
        guard case .leader(let state) = mode else { return }
        var targets = Set(cluster.bootstraps)
        for record in state.managers.values {
            targets.insert(record.info.heartbeat)
            for c in record.controllers { targets.insert(c.heartbeat) }
        }
        if let group = cluster.multicast { targets.insert(group) }
        let message = HeartbeatMessage.leader(state.me)
        Task { await link.send(message, to: targets) }
    }

    private func heartbeat(_ state: GroupManagerState) {
        let hello = HeartbeatMessage.hello(MemberInfo(id: id, role: .groupManager, control: me.control, heartbeat: me.heartbeat),
                                           knownTerm: state.leader?.term ?? 0)
        let bootstraps = cluster.bootstraps
        let leader = state.joinedLeader ? state.leader : nil
        let controllers = state.controllerList
        Task {
            await link.send(hello, to: bootstraps)
            if let leader {
                await link.send(.managerSummary(me, term: leader.term, controllers: controllers), to: [leader.heartbeat])
                await link.send(.manager(me, leaderTerm: leader.term), to: controllers.map(\.heartbeat))
            } else if !controllers.isEmpty {
                await link.send(.manager(me, leaderTerm: 0), to: controllers.map(\.heartbeat))
            }
        }
    }

    // MARK: - Messages

    func receive(_ decoded: HeartbeatCodec.Decoded) {
        let now = self.now
        switch (mode, decoded.message) {
        case (.manager(var state), .leader(let leader)):
            let directives = state.onLeaderAnnouncement(leader, now: now)
            mode = .manager(state)
            for d in directives { apply(d) }
        case (.manager(var state), .controller(let info, let managerID)) where managerID == id:
            let directives = state.onController(info, now: now)
            mode = .manager(state)
            for d in directives { apply(d) }
            settleReported(info)
        case (.leader(var state), .managerSummary(let manager, let term, let controllers)):
            let directives = state.onManagerSummary(manager, term: term, controllers: controllers, now: now)
            mode = .leader(state)
            for d in directives { apply(d) }
        case (.leader(let state), .leader(let other)) where other.id != id:
            // Only a stale leader can announce while we hold the term; a newer term means we are the stale one.
            if other.term > state.me.term {
                log.error("a leader of a newer term exists; stepping down", metadata: ["doze/term": "\(other.term)"])
                // Capture it now: stepDown clears `leadership` before any task could run.
                let held = leadership
                Task { await held?.resign() }
                stepDown(reason: "newer term \(other.term)")
            } else {
                Task { await link.count("staleTerm") }
            }
        default:
            break   // not addressed to this role: a manager's own messages, hellos, controllers of others
        }
    }

    private func apply(_ directive: GroupManagerState.Directive) {
        switch directive {
        case .joinLeader(let leader):
            joinLeader(leader)
        case .controllerDown(let c):
            controllerVMs[c.id] = nil
            controllerVMsAt[c.id] = nil
            log.warning("local controller down", metadata: ["doze/lc": "\(c.id)", "doze/address": "\(c.control)"])
        case .controllerJoined(let c):
            log.info("local controller joined", metadata: ["doze/lc": "\(c.id)", "doze/vms": "\(c.vms.count)"])
        case .leaderLost(let l):
            log.warning("group leader silent; waiting for an announcement", metadata: ["doze/leader": "\(l.id)", "doze/term": "\(l.term)"])
        case .ignoredStaleTerm:
            Task { await link.count("staleTerm") }
        }
    }

    private func apply(_ directive: GroupLeaderState.Directive) {
        switch directive {
        case .managerJoined(let m):
            log.info("group manager joined", metadata: ["doze/gm": "\(m.id)", "doze/address": "\(m.control)"])
        case .managerDown(let m, let controllers):
            log.warning("group manager down; its controllers re-join elsewhere",
                        metadata: ["doze/gm": "\(m.id)", "doze/lcs": "\(controllers.count)"])
        case .controllerDown(let c, let managerID):
            log.warning("local controller down", metadata: ["doze/lc": "\(c.id)", "doze/gm": "\(managerID)"])
        case .ignoredStaleTerm:
            Task { await link.count("staleTerm") }
        }
    }

    private func joinLeader(_ leader: LeaderInfo) {
        guard !joinInFlight, case .manager(let state) = mode else { return }
        joinInFlight = true
        let request = JoinLeaderRequest(manager: me, term: leader.term, controllers: state.controllerList)
        Task {
            let ok: Bool
            do {
                _ = try await peers.call(.POST, leader.control, "/groupmanager?joinGroupLeader", body: request, as: String.self)
                ok = true
            } catch {
                log.warning("joining the group leader failed", metadata: ["error": "\(error)"])
                ok = false
            }
            joined(leader, ok: ok)
        }
    }

    private func joined(_ leader: LeaderInfo, ok: Bool) {
        joinInFlight = false
        guard case .manager(var state) = mode else { return }
        if ok {
            state.onJoinedLeader(leader)
            log.info("joined the group leader", metadata: ["doze/leader": "\(leader.id)", "doze/term": "\(leader.term)"])
        } else {
            state.onJoinLeaderFailed()
        }
        mode = .manager(state)
    }

    // MARK: - HTTP (GroupManagerBackend)

    func leaderState() throws(DozeError) -> GroupLeaderState {
        guard case .leader(let state) = mode else {
            var hint = ""
            if case .manager(let m) = mode, let l = m.leader { hint = "; the leader is \(l.id) at \(l.control)" }
            throw DozeError(.conflict, "this group manager is not the group leader\(hint)")
        }
        return state
    }

    func managerState() throws(DozeError) -> GroupManagerState {
        guard case .manager(let state) = mode else {
            throw DozeError(.conflict, "this node is the group leader; it manages no local controllers")
        }
        return state
    }

    public func joinGroupLeader(_ request: JoinLeaderRequest) async throws(DozeError) {
        var state = try leaderState()
        guard request.term == state.me.term else {
            throw DozeError(.conflict, "join for term \(request.term), but this leader holds term \(state.me.term)")
        }
        let directives = state.onManagerJoin(request.manager, controllers: request.controllers, now: now)
        mode = .leader(state)
        for d in directives { apply(d) }
        announce()
    }

    public func assignLocalController(_ request: AssignRequest) async throws(DozeError) -> AssignedGroupManager {
        var state = try leaderState()
        // Managers join on the first announcement; assigning before they could would pile every controller
        // onto whichever manager answered first.
        guard now - electedAt >= cluster.heartbeatInterval * 2 else {
            throw DozeError(.unavailable, "the leader was just elected; group managers are still joining")
        }
        guard let manager = state.assign(request.controller, previous: request.previousManager, avoid: request.avoidManager) else {
            throw DozeError(.unavailable, "no group manager has joined the leader yet")
        }
        mode = .leader(state)
        return AssignedGroupManager(localControllerId: request.controller.id,
                                    groupManager: GroupManagerDescription(manager, term: state.me.term, isLeader: false))
    }

    public func localControllerList() async throws(DozeError) -> LocalControllerList {
        let state = try leaderState()
        let records = Array(state.managers.values)
        let described = await describeControllers(of: records)
        return LocalControllerList(localControllers: records.flatMap { described[$0.info.id] ?? [] }.sorted { $0.id < $1.id })
    }

    public func groupLeaderRepository() async throws(DozeError) -> GroupLeaderRepositoryInformation {
        let state = try leaderState()
        let stamp = Int64(Date().timeIntervalSince1970 * 1000)
        let records = state.managers.values.sorted { $0.info.id < $1.info.id }
        let described = await describeControllers(of: records)
        let managers = records.map { record in
            GroupManagerDescription(record.info, term: state.me.term, isLeader: false, controllers: described[record.info.id] ?? [],
                                    summary: record.summary, timeStamp: stamp)
        }
        return GroupLeaderRepositoryInformation(groupManagerDescriptions: managers, groupLeader: await selfDescription())
    }

    public func groupManagerDescription(id: String) async throws(DozeError) -> GroupManagerDescription {
        let state = try leaderState()
        if id == self.id { return await selfDescription() }
        guard let record = state.managers[id] else { throw DozeError(.notFound, "unknown group manager '\(id)'") }
        let described = await describeControllers(of: [record])
        return GroupManagerDescription(record.info, term: state.me.term, isLeader: false, controllers: described[id] ?? [],
                                       summary: record.summary, timeStamp: Int64(Date().timeIntervalSince1970 * 1000))
    }

    /// The leader's views of controllers, VMs included: each manager describes its own (asked now, in parallel,
    /// within `viewTimeout`), so a listed VM carries its real status, IP, capacity and location. A manager that
    /// does not answer in time has its controllers described from its last summary: VM names, located completely.
    private func describeControllers(of records: [GroupLeaderState.ManagerRecord]) async -> [NodeID: [LocalControllerDescription]] {
        let peers = self.peers
        let timeout = Self.viewTimeout
        let answers = await withTaskGroup(of: (NodeID, GroupManagerRepositoryInformation?).self) { group in
            // A manager whose controllers run no VM has nothing to add to the books.
            for record in records where record.controllers.contains(where: { !$0.vms.isEmpty }) {
                group.addTask {
                    (record.info.id, try? await peers.call(.POST, record.info.control, "/groupmanager?getGroupManagerRepositoryInformation",
                                                           body: "0", as: GroupManagerRepositoryInformation.self, timeout: timeout))
                }
            }
            var answers: [NodeID: GroupManagerRepositoryInformation] = [:]
            for await (manager, answer) in group { answers[manager] = answer }
            return answers
        }
        var described: [NodeID: [LocalControllerDescription]] = [:]
        for record in records {
            let own = Dictionary((answers[record.info.id]?.localControllerDescriptions ?? []).map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
            described[record.info.id] = record.controllers.map { controller in
                guard let answered = own[controller.id] else { return LocalControllerDescription(controller, manager: record.info) }
                // The leader's books place the controller; the manager's answer says what its VMs are.
                return LocalControllerDescription(controller, manager: record.info, hypervisorURI: answered.hypervisorSettings?.uri,
                                                  virtualMachines: Array(answered.virtualMachineMetaData.values))
            }
        }
        return described
    }

    /// How long a view waits for a manager's or a controller's own description before falling back to the books.
    static let viewTimeout: Duration = .seconds(2)
    /// A controller's VM report younger than this (and listing the names its heartbeats list) serves a view as it
    /// is: statuses in views lag by at most this much.
    static let reportMaxAge: Duration = .seconds(1)

    private func requireCoordinator() throws(DozeError) -> SubmissionCoordinator {
        _ = try leaderState()
        guard let coordinator else { throw DozeError(.unavailable, "the group leader is still starting its submission pipeline") }
        return coordinator
    }

    public func startVirtualCluster(_ request: VirtualClusterSubmissionRequest) async throws(DozeError) -> String {
        try await requireCoordinator().submit(request)
    }

    public func virtualClusterTask(id: String, wait: Duration) async throws(DozeError) -> VirtualClusterTaskDocument {
        try await requireCoordinator().document(id, wait: wait)
    }

    public func discoverVirtualMachine(_ vm: String) async throws(DozeError) -> VirtualMachineDiscoveryResponse {
        try await requireCoordinator().discover(vm)
    }

    public func joinGroupManager(_ request: JoinManagerRequest) async throws(DozeError) {
        var state = try managerState()
        let directives = state.onController(request.controller, now: now)
        mode = .manager(state)
        controllerVMs[request.controller.id] = request.virtualMachines
        controllerVMsAt[request.controller.id] = now
        controllerHypervisors[request.controller.id] = request.hypervisorURI
        for d in directives { apply(d) }
    }

    /// This manager's controllers as their own reports describe them (asked now, in parallel, within the view
    /// timeout). A controller that does not answer is described from its last report, less the VMs its
    /// heartbeats no longer list.
    func describe(_ controllers: [ControllerInfo]) async -> [LocalControllerDescription] {
        let peers = self.peers
        let timeout = Self.viewTimeout / 2   // inside the leader's wait for this manager
        // Ask only where the last report may be out of date: a controller with VMs whose heartbeats list other
        // names than that report, or whose report is older than `reportMaxAge`. At 200 controllers, asking each
        // on every view cost 20x the view itself.
        let now = self.now
        let stale = controllers.filter { controller in
            guard !controller.vms.isEmpty else { return false }
            guard let last = controllerVMs[controller.id], let at = controllerVMsAt[controller.id],
                  now - at <= Self.reportMaxAge else { return true }
            return Set(last.map(\.virtualMachineLocation.virtualMachineId)) != Set(controller.vms)
        }
        let answers = await withTaskGroup(of: (NodeID, [VirtualMachineMetaData]?).self) { group in
            for controller in stale {
                group.addTask {
                    (controller.id, try? await peers.call(.POST, controller.control, "/localcontroller?getVirtualMachines", body: "0",
                                                          as: [VirtualMachineMetaData].self, timeout: timeout))
                }
            }
            var answers: [NodeID: [VirtualMachineMetaData]] = [:]
            for await (controller, answer) in group { answers[controller] = answer }
            return answers
        }
        return controllers.map { controller in
            if let reported = answers[controller.id] {
                // Kept only for a controller still managed here (it may have been dropped during the question).
                if case .manager(let state) = mode, state.controllers[controller.id] != nil {
                    self.controllerVMs[controller.id] = reported
                    self.controllerVMsAt[controller.id] = now
                }
                return LocalControllerDescription(controller, manager: me, hypervisorURI: controllerHypervisors[controller.id],
                                                  virtualMachines: reported)
            }
            let listed = Set(controller.vms)
            let last = (controllerVMs[controller.id] ?? []).filter { listed.contains($0.virtualMachineLocation.virtualMachineId) }
            return LocalControllerDescription(controller, manager: me, hypervisorURI: controllerHypervisors[controller.id],
                                              virtualMachines: last)
        }
    }

    public func groupManagerRepository() async throws(DozeError) -> GroupManagerRepositoryInformation {
        GroupManagerRepositoryInformation(localControllerDescriptions: await describe(try managerState().controllerList))
    }

    public func localControllerDescription(id: String) async throws(DozeError) -> LocalControllerDescription {
        guard let c = try managerState().controllers[id] else { throw DozeError(.notFound, "unknown local controller '\(id)'") }
        return await describe([c])[0]
    }

    public func selfDescription() async -> GroupManagerDescription {
        switch mode {
        case .leader(let state):
            return GroupManagerDescription(me, term: state.me.term, isLeader: true)
        case .manager(let state):
            return GroupManagerDescription(me, term: state.leader?.term ?? 0, isLeader: false,
                                           controllers: await describe(state.controllerList), summary: state.summary,
                                           timeStamp: Int64(Date().timeIntervalSince1970 * 1000))
        }
    }
}
