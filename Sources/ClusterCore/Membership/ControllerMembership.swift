/// A local controller's place in the hierarchy: which leader it follows and which manager it belongs to.
///
/// States: `unassigned` (no manager; asks the leader for one every `retryInterval` while a leader is known)
/// → `assigning` (a request to the leader is in flight) → `joining` (joinGroupManager in flight) → `joined`.
/// A joined controller whose manager falls silent for `managerTimeout` goes back to `unassigned` at once.
public struct ControllerMembership: Sendable {
    public struct Settings: Sendable {
        public var managerTimeout: Duration = .milliseconds(1200)
        public var retryInterval: Duration = .milliseconds(250)
        public var leaderTimeout: Duration = .milliseconds(2000)
        public init() {}
    }

    public enum State: Sendable, Equatable {
        case unassigned(lastAttempt: MonotonicTime?)
        case assigning(since: MonotonicTime)
        case joining(ManagerInfo, since: MonotonicTime)
        case joined(ManagerInfo, lastHeard: MonotonicTime)
    }

    public enum Directive: Sendable, Equatable {
        /// Ask the leader (HTTP `assignLocalController`) for a manager; `previous` is where we were.
        case requestAssignment(LeaderInfo, previous: NodeID?, avoid: NodeID?)
        /// Join this manager (HTTP `joinGroupManager`), reporting our VMs.
        case join(ManagerInfo)
        case managerLost(ManagerInfo)
        case joined(ManagerInfo)
        case ignoredStaleTerm(Term)
    }

    public var settings: Settings
    public private(set) var state: State = .unassigned(lastAttempt: nil)
    public private(set) var leader: LeaderInfo?
    private var leaderHeard: MonotonicTime = .zero
    /// The last manager we belonged to (persisted by the shell across restarts).
    public private(set) var previousManager: NodeID?
    /// A manager that just failed us; not asked for again on the next assignment.
    private var avoid: NodeID?

    public init(previousManager: NodeID? = nil, settings: Settings = Settings()) {
        self.previousManager = previousManager
        self.settings = settings
    }

    public var manager: ManagerInfo? {
        if case .joined(let manager, _) = state { return manager }
        return nil
    }

    /// MUST be invoked for every authenticated leader announcement.
    public mutating func onLeaderAnnouncement(_ announced: LeaderInfo, now: MonotonicTime) -> [Directive] {
        if let current = leader {
            if announced.term < current.term || (announced.term == current.term && announced.id != current.id) {
                return [.ignoredStaleTerm(announced.term)]
            }
        }
        leader = announced
        leaderHeard = now
        return attemptIfDue(now: now)
    }

    /// MUST be invoked for every authenticated announcement of a group manager.
    public mutating func onManagerAnnouncement(_ announced: ManagerInfo, now: MonotonicTime) -> [Directive] {
        guard case .joined(let current, _) = state, current.id == announced.id else { return [] }
        state = .joined(announced, lastHeard: now)
        return []
    }

    public mutating func onAssigned(_ manager: ManagerInfo, now: MonotonicTime) -> [Directive] {
        guard case .assigning = state else { return [] }
        state = .joining(manager, since: now)
        return [.join(manager)]
    }

    /// The leader had no manager for us, or could not be reached: retry after `retryInterval`.
    public mutating func onAssignmentFailed(now: MonotonicTime) {
        if case .assigning = state { state = .unassigned(lastAttempt: now) }
    }

    public mutating func onJoined(_ manager: ManagerInfo, now: MonotonicTime) -> [Directive] {
        guard case .joining(let candidate, _) = state, candidate.id == manager.id else { return [] }
        state = .joined(manager, lastHeard: now)
        previousManager = manager.id
        avoid = nil
        return [.joined(manager)]
    }

    public mutating func onJoinFailed(now: MonotonicTime) {
        if case .joining(let candidate, _) = state {
            avoid = candidate.id
            state = .unassigned(lastAttempt: now)
        }
    }

    /// MUST be invoked periodically.
    public mutating func onTick(now: MonotonicTime) -> [Directive] {
        var directives: [Directive] = []
        switch state {
        case .joined(let manager, let heard) where now - heard > settings.managerTimeout:
            state = .unassigned(lastAttempt: nil)
            avoid = manager.id
            directives.append(.managerLost(manager))
        case .assigning(let since) where now - since > settings.managerTimeout:
            state = .unassigned(lastAttempt: now)     // the request hung; ask again
        case .joining(_, let since) where now - since > settings.managerTimeout:
            state = .unassigned(lastAttempt: now)
        default:
            break
        }
        if leader != nil, now - leaderHeard > settings.leaderTimeout { leader = nil }
        return directives + attemptIfDue(now: now)
    }

    private mutating func attemptIfDue(now: MonotonicTime) -> [Directive] {
        guard let leader, case .unassigned(let last) = state else { return [] }
        if let last, now - last < settings.retryInterval { return [] }
        state = .assigning(since: now)
        return [.requestAssignment(leader, previous: previousManager, avoid: avoid)]
    }
}
