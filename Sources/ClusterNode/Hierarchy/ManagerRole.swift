import ClusterAPI
import ClusterCore
import ClusterTransport
import ClusterWire
import Foundation
import Logging
import NIOHTTP1

/// A group manager following the leader (Snooze's GM). Everything a manager does starts here:
/// - membership: it joins the leader, takes in the local controllers the leader assigns it, watches their
///   heartbeats and sends the leader a summary of them (`GroupManagerState` decides, this actor carries out);
/// - its view of its controllers (`getGroupManagerRepositoryInformation`, …);
/// - placing and starting VMs on its controllers and forwarding VM operations to them (ManagerRole+VMs.swift).
///
/// The node keeps one for its whole life. While the node leads, this role idles: it forgets its controllers
/// (they re-join other managers) and refuses manager calls, but keeps its submission books, so a VM it started
/// before is answered, never started again, when a later leader re-asks.
actor ManagerRole {
    private(set) var context: GroupManagerContext
    private(set) var state: GroupManagerState
    /// While the node holds leadership.
    private(set) var nodeIsLeading = false
    private var joinInFlight = false
    /// What each managed controller last said of its VMs (when it joined, or when a view last asked it), and when.
    private var controllerVMs: [NodeID: [VirtualMachineMetaData]] = [:]
    private var controllerVMsAt: [NodeID: MonotonicTime] = [:]
    private var controllerHypervisors: [NodeID: String] = [:]
    /// Each managed controller's VM use, windowed (ManagerRole+Usage.swift).
    var usageWindows: UsageWindows

    // The submission books (ManagerRole+VMs.swift).
    /// Placement over this manager's controllers; a reservation lasts until the controller's heartbeat lists the VM.
    var controllerPlacement: Placement
    var reservedAt: [String: MonotonicTime] = [:]
    /// When the controller answered a reserved VM's start; its next heartbeat after that reflects the VM.
    var startAnsweredAt: [String: MonotonicTime] = [:]
    /// VMs being started, by id: a repeated request (a new leader re-asking) waits for the same start.
    var vmStarts: [String: Task<VirtualMachineMetaData, Never>] = [:]
    /// Recent outcomes, by VM id, so a re-asked start answers at once instead of placing the VM again.
    var vmOutcomes: [String: (meta: VirtualMachineMetaData, at: MonotonicTime)] = [:]

    /// How long a view waits for a manager's or a controller's own description before falling back to the books.
    static let viewTimeout: Duration = .seconds(2)
    /// A controller's VM report younger than this (and listing the names its heartbeats list) serves a view as it
    /// is: statuses in views lag by at most this much.
    static let reportMaxAge: Duration = .seconds(1)

    var id: NodeID { context.id }
    var me: ManagerInfo { context.me }
    var cluster: ClusterSettings { context.cluster }
    var peers: PeerClient { context.peers }
    var log: Logger { context.log }
    var now: MonotonicTime { context.now }

    init(context: GroupManagerContext) {
        self.context = context
        self.state = Self.freshState(context)
        self.controllerPlacement = Placement(policy: context.cluster.submission.placement)
        self.usageWindows = UsageWindows(estimator: context.cluster.rebalancing.estimator)
    }

    private static func freshState(_ context: GroupManagerContext) -> GroupManagerState {
        var settings = GroupManagerState.Settings()
        settings.controllerTimeout = context.cluster.controllerTimeout
        settings.leaderTimeout = context.cluster.leaderTimeout
        return GroupManagerState(me: context.me, settings: settings)
    }

    func setControl(_ endpoint: Endpoint) {
        context.me.control = endpoint
        if !nodeIsLeading { state = Self.freshState(context) }
    }

    /// The node won the election: its controllers go elsewhere.
    func nodeLeads() {
        nodeIsLeading = true
        controllerVMs = [:]
        controllerVMsAt = [:]
        usageWindows = UsageWindows(estimator: cluster.rebalancing.estimator)
    }

    /// The node stepped down: it starts over as a manager with no controllers, looking for the new leader.
    func nodeFollows() {
        nodeIsLeading = false
        state = Self.freshState(context)
    }

    /// The state of a following manager, or the refusal a leading node gives to manager calls.
    func following() throws(DozeError) -> GroupManagerState {
        guard !nodeIsLeading else {
            throw DozeError(.conflict, "this node is the group leader; it manages no local controllers")
        }
        return state
    }

    /// "; the leader is … at …" for a refusal of a leader's call, when this manager knows the leader.
    func leaderHint() -> String {
        guard !nodeIsLeading, let leader = state.leader else { return "" }
        return "; the leader is \(leader.id) at \(leader.control)"
    }

    // MARK: - Heartbeats

    func tick() {
        guard !nodeIsLeading else { return }
        for directive in state.onTick(now: now) { apply(directive) }
        heartbeat()
        pruneSubmissionBooks()
    }

    func receive(_ decoded: HeartbeatCodec.Decoded) {
        guard !nodeIsLeading else { return }
        switch decoded.message {
        case .leader(let leader):
            for directive in state.onLeaderAnnouncement(leader, now: now) { apply(directive) }
        case .controller(let reported, let managerID) where managerID == id:
            let info = takeUsage(from: reported)
            for directive in state.onController(info, now: now) { apply(directive) }
            settleReported(info)
        default:
            break   // not addressed to this role: other managers' messages, hellos, controllers of others
        }
    }

    /// Hello to the bootstraps, the summary to the leader, and "I am your manager" to each controller.
    private func heartbeat() {
        let hello = HeartbeatMessage.hello(MemberInfo(id: id, role: .groupManager, control: me.control, heartbeat: me.heartbeat),
                                           knownTerm: state.leader?.term ?? 0)
        let bootstraps = cluster.bootstraps
        let leader = state.joinedLeader ? state.leader : nil
        let controllers = state.controllerList
        let me = self.me, link = context.link
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

    private func apply(_ directive: GroupManagerState.Directive) {
        switch directive {
        case .joinLeader(let leader):
            joinLeader(leader)
        case .controllerDown(let controller):
            controllerVMs[controller.id] = nil
            controllerVMsAt[controller.id] = nil
            usageWindows.forget(host: controller.id)
            log.warning("local controller down", metadata: ["doze/lc": "\(controller.id)", "doze/address": "\(controller.control)"])
        case .controllerJoined(let controller):
            log.info("local controller joined", metadata: ["doze/lc": "\(controller.id)", "doze/vms": "\(controller.vms.count)"])
        case .leaderLost(let leader):
            log.warning("group leader silent; waiting for an announcement", metadata: ["doze/leader": "\(leader.id)", "doze/term": "\(leader.term)"])
        case .ignoredStaleTerm:
            let link = context.link
            Task { await link.count("staleTerm") }
        }
    }

    private func joinLeader(_ leader: LeaderInfo) {
        guard !joinInFlight, !nodeIsLeading else { return }
        joinInFlight = true
        let request = JoinLeaderRequest(manager: me, term: leader.term, controllers: state.controllerList)
        let peers = self.peers, log = self.log
        Task {
            let ok: Bool
            do {
                _ = try await peers.call(.POST, leader.control, "/groupmanager?joinGroupLeader", body: request, as: String.self)
                ok = true
            } catch {
                log.warning("joining the group leader failed", metadata: ["error": "\(error)"])
                ok = false
            }
            self.joined(leader, ok: ok)
        }
    }

    private func joined(_ leader: LeaderInfo, ok: Bool) {
        joinInFlight = false
        guard !nodeIsLeading else { return }
        if ok {
            state.onJoinedLeader(leader)
            log.info("joined the group leader", metadata: ["doze/leader": "\(leader.id)", "doze/term": "\(leader.term)"])
        } else {
            state.onJoinLeaderFailed()
        }
    }

    // MARK: - Controllers joining (HTTP)

    func joinGroupManager(_ request: JoinManagerRequest) throws(DozeError) {
        _ = try following()
        let directives = state.onController(takeUsage(from: request.controller), now: now)
        controllerVMs[request.controller.id] = request.virtualMachines
        controllerVMsAt[request.controller.id] = now
        controllerHypervisors[request.controller.id] = request.hypervisorURI
        for directive in directives { apply(directive) }
    }

    /// A VM moved between controllers (one or both ours).
    func virtualMachineMoved(_ move: VirtualMachineMove) {
        guard !nodeIsLeading else { return }
        state.moveVM(move.vm, from: move.from, to: move.to, demand: move.demand)
    }

    // MARK: - Views

    /// This manager's controllers as their own reports describe them (asked now, in parallel, within the view
    /// timeout). A controller that does not answer is described from its last report, less the VMs its
    /// heartbeats no longer list.
    func describe(_ controllers: [ControllerInfo]) async -> [LocalControllerDescription] {
        let peers = self.peers
        let timeout = Self.viewTimeout / 2   // inside the leader's wait for this manager
        // Ask only where the last report may be out of date: a controller with VMs whose heartbeats list other
        // names than that report, or whose report is older than `reportMaxAge`. At 200 controllers, asking each
        // on every view cost 20x the view itself.
        let askedAt = now
        let stale = controllers.filter { controller in
            guard !controller.vms.isEmpty else { return false }
            guard let last = controllerVMs[controller.id], let at = controllerVMsAt[controller.id],
                  askedAt - at <= Self.reportMaxAge else { return true }
            return Set(last.map(\.virtualMachineLocation.virtualMachineId)) != Set(controller.vms)
        }
        let answers = await askEach(stale, id: \.id) { controller in
            try? await peers.call(.POST, controller.control, "/localcontroller?getVirtualMachines", body: "0",
                                  as: [VirtualMachineMetaData].self, timeout: timeout)
        }
        return controllers.map { controller in
            if let reported = answers[controller.id] {
                // Kept only for a controller still managed here (it may have been dropped during the question).
                if !nodeIsLeading, state.controllers[controller.id] != nil {
                    controllerVMs[controller.id] = reported
                    controllerVMsAt[controller.id] = askedAt
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

    func groupManagerRepository() async throws(DozeError) -> GroupManagerRepositoryInformation {
        GroupManagerRepositoryInformation(localControllerDescriptions: await describe(try following().controllerList))
    }

    func localControllerDescription(id: String) async throws(DozeError) -> LocalControllerDescription {
        guard let controller = try following().controllers[id] else { throw DozeError(.notFound, "unknown local controller '\(id)'") }
        return await describe([controller])[0]
    }

    func selfDescription() async -> GroupManagerDescription {
        GroupManagerDescription(me, term: state.leader?.term ?? 0, isLeader: false,
                                controllers: await describe(state.controllerList), summary: state.summary,
                                timeStamp: Int64(Date().timeIntervalSince1970 * 1000))
    }
}
