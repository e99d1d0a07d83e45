/// The group leader's view: which group managers live, which local controllers each holds, and where a
/// joining local controller goes. Pure: the shell feeds it messages and ticks and carries out its directives.
public struct GroupLeaderState: Sendable {
    public enum AssignmentPolicy: String, Sendable, CaseIterable, Codable {
        case roundRobin = "round-robin"
        case leastLoaded = "least-loaded"
    }

    public struct Settings: Sendable {
        /// A manager silent this long is dead.
        public var managerTimeout: Duration = .milliseconds(1500)
        public var assignment: AssignmentPolicy = .roundRobin
        public init() {}
    }

    public struct ManagerRecord: Sendable, Equatable {
        public var info: ManagerInfo
        public var controllers: [ControllerInfo]
        public init(info: ManagerInfo, controllers: [ControllerInfo]) {
            self.info = info
            self.controllers = controllers
        }
        public var summary: CapacitySummary { controllers.reduce(CapacitySummary()) { $0 + $1.summary } }
        /// The same over the controllers that take new VMs (drained ones do not).
        public var openSummary: CapacitySummary {
            controllers.filter { $0.draining != true }.reduce(CapacitySummary()) { $0 + $1.summary }
        }
    }

    public enum Directive: Sendable, Equatable {
        case managerJoined(ManagerInfo)
        /// The manager died; these controllers were under it and will re-join elsewhere.
        case managerDown(ManagerInfo, controllers: [ControllerInfo])
        /// A controller left a manager's report (its manager dropped it).
        case controllerDown(ControllerInfo, managerID: NodeID)
        /// A message of another term: counted, not trusted.
        case ignoredStaleTerm(Term)
    }

    public let me: LeaderInfo
    public var settings: Settings
    public private(set) var managers: [NodeID: ManagerRecord] = [:]
    private var detector: FailureDetector<NodeID>
    private var roundRobinNext = 0
    /// Controllers assigned but not yet in their manager's report (reports lag a heartbeat): counted as the
    /// manager's when judging its share, so a burst of joins is not all sent to one manager.
    private var assignedNotReported: [NodeID: NodeID] = [:]

    public init(me: LeaderInfo, settings: Settings = Settings()) {
        self.me = me
        self.settings = settings
        self.detector = FailureDetector(timeout: settings.managerTimeout)
    }

    /// MUST be invoked when a group manager joins (HTTP `joinGroupLeader`) with the controllers it manages.
    public mutating func onManagerJoin(_ manager: ManagerInfo, controllers: [ControllerInfo], now: MonotonicTime) -> [Directive] {
        let isNew = managers[manager.id] == nil
        detector.onHeartbeat(from: manager.id, now: now)
        var directives: [Directive] = isNew ? [.managerJoined(manager)] : []
        directives += replaceControllers(of: manager, with: controllers)
        return directives
    }

    /// MUST be invoked for every authenticated manager summary datagram.
    public mutating func onManagerSummary(_ manager: ManagerInfo, term: Term, controllers: [ControllerInfo],
                                          now: MonotonicTime) -> [Directive] {
        guard term == me.term else { return [.ignoredStaleTerm(term)] }
        return onManagerJoin(manager, controllers: controllers, now: now)
    }

    private mutating func replaceControllers(of manager: ManagerInfo, with controllers: [ControllerInfo]) -> [Directive] {
        let before = managers[manager.id]?.controllers ?? []
        let now = Set(controllers.map(\.id))
        managers[manager.id] = ManagerRecord(info: manager, controllers: controllers.sorted { $0.id < $1.id })
        for id in now { assignedNotReported[id] = nil }
        // A controller now reported by this manager belongs to it alone.
        for id in managers.keys where id != manager.id {
            managers[id]!.controllers.removeAll { now.contains($0.id) }
        }
        return before.filter { !now.contains($0.id) && !isManaged($0.id) }.map { .controllerDown($0, managerID: manager.id) }
    }

    /// A VM migrated between controllers: shown at its destination before the managers' next summaries.
    public mutating func moveVM(_ vm: String, from source: NodeID, to destination: NodeID, demand: ResourceVector) {
        for id in managers.keys {
            for i in managers[id]!.controllers.indices {
                let controller = managers[id]!.controllers[i]
                if controller.id == source, controller.vms.contains(vm) { managers[id]!.controllers[i] = controller.removingVM(vm, demand) }
                if controller.id == destination, !controller.vms.contains(vm) { managers[id]!.controllers[i] = controller.addingVM(vm, demand) }
            }
        }
    }

    private func isManaged(_ controller: NodeID) -> Bool {
        managers.values.contains { $0.controllers.contains { $0.id == controller } }
    }

    /// Chooses the manager for a joining controller: the one that already holds it, else its previous one if it
    /// still lives, else the policy's pick. `avoid` is a manager the controller just saw fail (the leader may not
    /// have noticed yet). nil when no manager is alive.
    public mutating func assign(_ controller: ControllerInfo, previous: NodeID?, avoid: NodeID? = nil) -> ManagerInfo? {
        if let holder = managers.values.first(where: { $0.controllers.contains { $0.id == controller.id } }),
           holder.info.id != avoid {
            return holder.info
        }
        assignedNotReported[controller.id] = nil
        let candidates = managers.values.filter { $0.info.id != avoid }.sorted { $0.info.id < $1.info.id }
        guard !candidates.isEmpty else { return nil }
        // The previous manager, unless it already holds its share: stickiness must not keep a skew
        // (every controller of a restarted cluster would otherwise return to whichever manager it last had).
        if let previous, previous != avoid, let record = managers[previous] {
            let total = candidates.reduce(0) { $0 + load(of: $1) } + 1
            let share = (total + candidates.count - 1) / candidates.count
            if load(of: record) < share { return remember(controller, on: record.info) }
        }
        switch settings.assignment {
        case .roundRobin:
            // Rotate among the least-loaded managers so bursts spread evenly.
            let fewest = candidates.map(load(of:)).min()!
            let eligible = candidates.filter { load(of: $0) == fewest }
            let pick = eligible[roundRobinNext % eligible.count]
            roundRobinNext += 1
            return remember(controller, on: pick.info)
        case .leastLoaded:
            // Most free capacity first; among equals, the fewest controllers.
            return remember(controller, on: candidates.max { lhs, rhs in
                (lhs.summary.freeFraction, -load(of: lhs)) < (rhs.summary.freeFraction, -load(of: rhs))
            }!.info)
        }
    }

    /// Controllers a manager reports plus those just sent to it.
    private func load(of record: ManagerRecord) -> Int {
        record.controllers.count + assignedNotReported.values.filter { $0 == record.info.id }.count
    }

    private mutating func remember(_ controller: ControllerInfo, on manager: ManagerInfo) -> ManagerInfo {
        assignedNotReported[controller.id] = manager.id
        return manager
    }

    /// MUST be invoked periodically: managers silent past the timeout are dropped with their controllers.
    public mutating func onTick(now: MonotonicTime) -> [Directive] {
        detector.onTick(now: now).compactMap { id in
            guard let record = managers.removeValue(forKey: id) else { return nil }
            assignedNotReported = assignedNotReported.filter { $0.value != id }
            return .managerDown(record.info, controllers: record.controllers)
        }
    }

    public var allControllers: [ControllerInfo] {
        managers.values.flatMap(\.controllers).sorted { $0.id < $1.id }
    }

    public func manager(holding controller: NodeID) -> ManagerInfo? {
        managers.values.first { $0.controllers.contains { $0.id == controller } }?.info
    }
}
