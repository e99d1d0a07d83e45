/// A (non-leader) group manager's view: the leader it follows and the local controllers it manages.
public struct GroupManagerState: Sendable {
    public struct Settings: Sendable {
        /// A controller silent this long is dropped (Snooze: 20 s; the issue asks for detection within 2 s).
        public var controllerTimeout: Duration = .milliseconds(1200)
        /// A leader silent this long is forgotten; the next announcement (any term) is followed.
        public var leaderTimeout: Duration = .milliseconds(2000)
        public init() {}
    }

    public enum Directive: Sendable, Equatable {
        /// Join this leader (HTTP `joinGroupLeader`), reporting our controllers.
        case joinLeader(LeaderInfo)
        /// The controller stopped heartbeating: dropped, and reported to the leader.
        case controllerDown(ControllerInfo)
        case controllerJoined(ControllerInfo)
        case leaderLost(LeaderInfo)
        case ignoredStaleTerm(Term)
    }

    public let me: ManagerInfo
    public var settings: Settings
    public private(set) var leader: LeaderInfo?
    public private(set) var joinedLeader = false
    private var leaderHeard: MonotonicTime = .zero
    public private(set) var controllers: [NodeID: ControllerInfo] = [:]
    private var detector: FailureDetector<NodeID>

    public init(me: ManagerInfo, settings: Settings = Settings()) {
        self.me = me
        self.settings = settings
        self.detector = FailureDetector(timeout: settings.controllerTimeout)
    }

    /// MUST be invoked for every authenticated leader announcement.
    /// Older terms are ignored: a partitioned old leader that comes back cannot take anyone back.
    public mutating func onLeaderAnnouncement(_ announced: LeaderInfo, now: MonotonicTime) -> [Directive] {
        if let current = leader {
            if announced.term < current.term { return [.ignoredStaleTerm(announced.term)] }
            if announced.term == current.term {
                guard announced.id == current.id else { return [.ignoredStaleTerm(announced.term)] }
                leaderHeard = now
                leader = announced
                return joinedLeader ? [] : [.joinLeader(announced)]
            }
        }
        leader = announced
        leaderHeard = now
        joinedLeader = false
        return [.joinLeader(announced)]
    }

    /// MUST be invoked when the join to `leader` succeeded.
    public mutating func onJoinedLeader(_ joined: LeaderInfo) {
        if leader == joined { joinedLeader = true }
    }

    public mutating func onJoinLeaderFailed() { joinedLeader = false }

    /// MUST be invoked when a controller joins (HTTP `joinGroupManager`) or heartbeats this manager.
    /// An unknown controller heartbeating us is adopted: that is how a restarted manager gets its controllers back.
    public mutating func onController(_ controller: ControllerInfo, now: MonotonicTime) -> [Directive] {
        let isNew = detector.onHeartbeat(from: controller.id, now: now)
        controllers[controller.id] = controller
        return isNew ? [.controllerJoined(controller)] : []
    }

    /// MUST be invoked periodically.
    public mutating func onTick(now: MonotonicTime) -> [Directive] {
        var directives: [Directive] = detector.onTick(now: now).compactMap { id in
            controllers.removeValue(forKey: id).map(Directive.controllerDown)
        }
        if let current = leader, now - leaderHeard > settings.leaderTimeout {
            leader = nil
            joinedLeader = false
            directives.append(.leaderLost(current))
        }
        return directives
    }

    /// A VM migrated between two of the controllers this view knows (either may be elsewhere): the books show it
    /// at once, before the controllers' next heartbeats confirm it.
    public mutating func moveVM(_ vm: String, from source: NodeID, to destination: NodeID, demand: ResourceVector) {
        if let controller = controllers[source], controller.vms.contains(vm) { controllers[source] = controller.removingVM(vm, demand) }
        if let controller = controllers[destination], !controller.vms.contains(vm) { controllers[destination] = controller.addingVM(vm, demand) }
    }

    /// The controllers in a stable order, for summaries and joins.
    public var controllerList: [ControllerInfo] { controllers.values.sorted { $0.id < $1.id } }

    public var summary: CapacitySummary { controllers.values.reduce(CapacitySummary()) { $0 + $1.summary } }
}
