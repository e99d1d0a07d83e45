import ClusterAPI
import ClusterCore
import ClusterTransport
import ClusterWire
import Foundation
import Logging

/// What both roles of a group-manager process share: who it is, where it listens, how it talks, its clock.
struct GroupManagerContext: Sendable {
    let id: NodeID
    var me: ManagerInfo
    let cluster: ClusterSettings
    let link: HeartbeatLink
    let peers = PeerClient(timeout: .seconds(1))
    /// The node's token checker (one for its life; the leader of each term updates it).
    let tokens: ClusterTokens
    let log: Logger
    let started: ContinuousClock.Instant

    /// Time since the process started: what the pure state machines count in.
    var now: MonotonicTime { started.duration(to: ContinuousClock.now) }
}

/// A group-manager process: a thin shell around its two roles. It campaigns for leadership; while it holds
/// it, a `LeaderRole` (one per term) does the group leader's work; otherwise its `ManagerRole` follows the
/// leader and manages the local controllers the leader assigns. This actor only switches between them on
/// election events and hands each heartbeat, tick and HTTP call to the role it belongs to.
public actor GroupManagerNode: GroupManagerBackend {
    public nonisolated let id: NodeID
    private var context: GroupManagerContext
    private let election: any LeaderElection
    /// Opens the records of one term of leadership (the backend's other half).
    private let openRecords: @Sendable (Term, Logger) throws -> any ClusterRecordStore
    /// Kept for the node's whole life: it idles while the node leads (see `ManagerRole.nodeLeads`).
    let manager: ManagerRole
    private var leader: LeaderRole?
    private var leadership: (any Leadership)?

    init(id: NodeID, control: Endpoint, link: HeartbeatLink, cluster: ClusterSettings, backend: CoordinationBackend,
         tokens: ClusterTokens = ClusterTokens(adminSecretHash: nil, load: nil), logger: Logger) {
        self.id = id
        var log = logger
        log[metadataKey: "doze/role"] = "gm"
        log[metadataKey: "doze/node"] = "\(id)"
        let context = GroupManagerContext(id: id, me: ManagerInfo(id: id, control: control, heartbeat: link.channel.localEndpoint),
                                          cluster: cluster, link: link, tokens: tokens, log: log, started: ContinuousClock.now)
        self.context = context
        self.election = backend.election
        self.openRecords = backend.openRecords
        self.manager = ManagerRole(context: context)
    }

    public var isLeader: Bool { leader != nil }

    // MARK: - Run

    /// The HTTP port is known only once the server listens (port 0 picks one).
    func setControl(_ endpoint: Endpoint) async {
        context.me.control = endpoint
        await manager.setControl(endpoint)
    }

    /// Campaigns, ticks and handles heartbeats until cancelled.
    func run() async {
        while context.me.control.port == 0 && !Task.isCancelled { try? await Task.sleep(for: .milliseconds(10)) }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.campaignLoop() }
            group.addTask {
                await self.context.link.drive(interval: self.context.cluster.heartbeatInterval,
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
                await becomeLeader(won)
                await won.lost()
                if Task.isCancelled { return }
                await stepDown(reason: "leadership lost")
            } catch {
                if Task.isCancelled { return }
                context.log.warning("campaign failed, retrying", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .milliseconds(500))
            }
        }
    }

    private func becomeLeader(_ won: any Leadership) async {
        leadership = won
        context.log.notice("elected group leader", metadata: ["doze/term": "\(won.term)"])
        var store: (any ClusterRecordStore)?
        do { store = try openRecords(won.term, context.log) } catch {
            context.log.error("cannot open the cluster records; submissions will not survive a failover", metadata: ["error": "\(error)"])
        }
        // As in Snooze, the leader manages no controllers: they re-join other managers.
        await manager.nodeLeads()
        let role = LeaderRole(context: context, term: won.term, store: store)
        leader = role
        await role.start()
    }

    private func stepDown(reason: String) async {
        context.log.warning("stepping down", metadata: ["reason": "\(reason)"])
        leadership = nil
        let old = leader
        leader = nil
        await manager.nodeFollows()
        await old?.stop()
    }

    private func tick() async {
        if let leader { await leader.tick() } else { await manager.tick() }
    }

    func receive(_ decoded: HeartbeatCodec.Decoded) async {
        guard let leader, let term = leadership?.term else { return await manager.receive(decoded) }
        if case .leader(let other) = decoded.message, other.id != id {
            // Only a stale leader can announce while we hold the term; a newer term means we are the stale one.
            if other.term > term {
                context.log.error("a leader of a newer term exists; stepping down", metadata: ["doze/term": "\(other.term)"])
                let held = leadership
                await stepDown(reason: "newer term \(other.term)")
                await held?.resign()
            } else {
                await context.link.count("staleTerm")
            }
            return
        }
        await leader.receive(decoded)
    }

    // MARK: - HTTP (GroupManagerBackend): each call goes to the role it belongs to

    /// The current leader role, or the refusal a plain manager gives, naming the leader it follows.
    func leading() async throws(DozeError) -> LeaderRole {
        if let leader { return leader }
        let hint = await manager.leaderHint()
        throw DozeError(.conflict, "this group manager is not the group leader\(hint)")
    }

    public func joinGroupLeader(_ request: JoinLeaderRequest) async throws(DozeError) {
        try await leading().joinGroupLeader(request)
    }

    public func assignLocalController(_ request: AssignRequest) async throws(DozeError) -> AssignedGroupManager {
        try await leading().assignLocalController(request)
    }

    public func localControllerList() async throws(DozeError) -> LocalControllerList {
        try await leading().localControllerList()
    }

    public func groupLeaderRepository() async throws(DozeError) -> GroupLeaderRepositoryInformation {
        try await leading().groupLeaderRepository()
    }

    public func groupManagerDescription(id: String) async throws(DozeError) -> GroupManagerDescription {
        try await leading().groupManagerDescription(id: id)
    }

    public func startVirtualCluster(_ request: VirtualClusterSubmissionRequest) async throws(DozeError) -> String {
        let leader = try await leading()
        return try await leader.startVirtualCluster(try await leader.admitToTenant(request, by: RequestPrincipal.current))
    }

    public func virtualClusterTask(id: String, wait: Duration) async throws(DozeError) -> VirtualClusterTaskDocument {
        let principal = RequestPrincipal.current
        let document = try await leading().virtualClusterTask(id: id, wait: wait)
        guard principal.scope == nil || document.response.virtualMachineMetaData.allSatisfy({ principal.sees($0.tenant) }) else {
            throw DozeError(.notFound, "no task '\(id)'")
        }
        return document
    }

    public func discoverVirtualMachine(_ vm: String) async throws(DozeError) -> VirtualMachineDiscoveryResponse {
        let leader = try await leading()
        guard await leader.visible(vm, to: RequestPrincipal.current) else { throw DozeError(.notFound, "no VM '\(vm)' in this cluster") }
        return try await leader.discoverVirtualMachine(vm)
    }

    public func migrate(_ request: MigrationSubmission) async throws(DozeError) -> MigrationRecord {
        try await leading().migrate(request)
    }

    public func migration(id: String, wait: Duration) async throws(DozeError) -> MigrationRecord {
        try await leading().migration(id: id, wait: wait)
    }

    public func migrationList() async throws(DozeError) -> MigrationList {
        try await leading().migrationList()
    }

    public func abortMigration(id: String) async throws(DozeError) -> MigrationRecord {
        try await leading().abortMigration(id: id)
    }

    public func hostList() async throws(DozeError) -> HostList {
        try await leading().hostList()
    }

    public func drainHost(_ id: String, options: MigrationOptions?) async throws(DozeError) -> DrainReport {
        try await leading().drainHost(id, options: options)
    }

    public func undrainHost(_ id: String) async throws(DozeError) -> DrainReport {
        try await leading().undrainHost(id)
    }

    // The manager role refuses these itself while the node leads.

    public func joinGroupManager(_ request: JoinManagerRequest) async throws(DozeError) {
        try await manager.joinGroupManager(request)
    }

    public func groupManagerRepository() async throws(DozeError) -> GroupManagerRepositoryInformation {
        try await manager.groupManagerRepository()
    }

    public func localControllerDescription(id: String) async throws(DozeError) -> LocalControllerDescription {
        try await manager.localControllerDescription(id: id)
    }

    public func startVirtualMachines(_ submission: VirtualMachineSubmission, task: String?, retry: Bool) async throws(DozeError) -> VirtualMachineSubmission {
        try await manager.startVirtualMachines(submission, task: task, retry: retry)
    }

    public func controlVirtualMachine(_ operation: VMControl, _ location: VirtualMachineLocation) async throws(DozeError) {
        try await requireVisible(location.virtualMachineId, on: manager)
        try await manager.controlVirtualMachine(operation, location)
    }

    public func resizeVirtualMachine(_ request: ResizeRequest) async throws(DozeError) -> VirtualMachineMetaData {
        try await requireVisible(request.virtualMachineLocation.virtualMachineId, on: manager)
        return try await manager.resizeVirtualMachine(request)
    }

    public func virtualMachineMetaData(_ request: VirtualMachineMetaDataRequest) async throws(DozeError) -> VirtualMachineMetaData {
        let meta = try await manager.virtualMachineMetaData(request)
        guard RequestPrincipal.current.sees(meta.tenant) else {
            throw DozeError(.notFound, "no VM '\(request.virtualMachineLocation.virtualMachineId)' in this cluster")
        }
        return meta
    }

    public func searchVirtualMachine(_ vm: String) async throws(DozeError) -> String? {
        try await requireVisible(vm, on: manager)
        return try await manager.searchVirtualMachine(vm)
    }

    public func virtualMachineMoved(_ move: VirtualMachineMove) async throws(DozeError) {
        await manager.virtualMachineMoved(move)
    }

    // Both roles answer these, each for what it oversees.

    public func selfDescription() async -> GroupManagerDescription {
        if let leader { return await leader.selfDescription() }
        return await manager.selfDescription()
    }

    /// Every VM on this manager's controllers (a plain manager), or on the whole cluster (the leader asks every manager).
    public func virtualMachineDescriptions() async throws(DozeError) -> VirtualMachineList {
        let principal = RequestPrincipal.current
        var list: VirtualMachineList
        if let leader { list = await leader.virtualMachineDescriptions() } else { list = try await manager.virtualMachineDescriptions() }
        if principal.scope != nil { list.virtualMachines.removeAll { !principal.sees($0.tenant) } }
        return list
    }
}

/// The kvm-apps API is the leader's; plain managers refuse it, naming the leader.
extension GroupManagerNode: KVMAppBackend {
    public func createApp(_ app: KVMAppID, _ request: KVMAppCreateRequest) async throws(DozeError) -> KVMAppCreated {
        try await leading().createApp(app, request)
    }

    public func listApps() async throws(DozeError) -> [KVMAppEntry] {
        try await leading().listApps()
    }

    public func appTasks(_ id: String) async throws(DozeError) -> [KVMAppTaskEntry] {
        try await leading().appTasks(id)
    }

    public func operateApp(_ id: String, _ operation: KVMAppOperation) async throws(DozeError) -> KVMAppEntry? {
        try await leading().operateApp(id, operation)
    }
}

extension VirtualMachineMove {
    /// What the VM asks for, as both roles' books count it.
    var demand: ResourceVector { ResourceVector(vcpus: Double(vcpus), memoryKiB: Double(memoryMiB) * 1024) }
}
