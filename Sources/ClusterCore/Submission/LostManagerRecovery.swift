/// A group manager died with a batch of VMs in hand. Its controllers re-join other managers and report what they
/// run: a VM that shows up started. One that does not goes to another manager, but only once every controller
/// could be asked whether it runs it: a VM started twice is worse than one that failed, so while a controller
/// cannot be asked nothing is placed again, and after a bound the VMs fail with that reason.
///
/// Pure: the shell looks, asks, records and waits as told and feeds back what it found; time is passed in.
public struct LostManagerRecovery: Sendable {
    public struct Settings: Sendable {
        /// How long the heartbeats are watched for the VMs: the time a controller takes to re-join, and then some.
        public var watchTime: Duration
        public var watchInterval: Duration = .milliseconds(250)
        /// How long the controllers are asked before the VMs fail for want of an answer from all of them.
        public var askTime: Duration = .seconds(20)
        public var askInterval: Duration = .milliseconds(500)
        public init(settleTime: Duration) { self.watchTime = settleTime + .seconds(3) }
    }

    public enum Directive: Sendable, Equatable {
        /// Look for the `remaining` VMs in the managers' heartbeats, record those found as running, then invoke
        /// `onLookedInHeartbeats`.
        case lookInHeartbeats
        /// Ask every controller what it runs, record the `remaining` VMs found, then invoke `onAskedControllers`.
        case askControllers
        /// Wait, then invoke `onPauseElapsed`.
        case pause(Duration)
        /// Every controller answered and these VMs run nowhere: invoke `onManagersView` with the leader's view.
        case chooseManager
        /// Dispatch these VMs to this manager (their manager in the records changes first).
        case move([String], to: ManagerInfo)
        case fail([String], VMErrorCode, String)
    }

    private enum Phase: Sendable {
        case watching(until: MonotonicTime)
        case asking(until: MonotonicTime)
        case choosing
        case done
    }

    public let manager: NodeID
    /// Why the manager is thought lost (its last error), for the failure messages.
    public let reason: String
    public let settings: Settings
    /// VMs not found anywhere yet, in the batch's order.
    public private(set) var remaining: [String]
    private var phase: Phase

    public init(manager: NodeID, vms: [String], reason: String, settings: Settings, now: MonotonicTime) {
        self.manager = manager
        self.reason = reason
        self.settings = settings
        self.remaining = vms
        self.phase = .watching(until: now + settings.watchTime)
    }

    public func start() -> [Directive] { remaining.isEmpty ? [] : [.lookInHeartbeats] }

    /// MUST be invoked after a `.lookInHeartbeats` with the VMs found (and recorded).
    public mutating func onLookedInHeartbeats(found: Set<String>) -> [Directive] {
        remaining.removeAll { found.contains($0) }
        return [.pause(settings.watchInterval)]
    }

    /// MUST be invoked once the pause of a `.pause` has passed.
    public mutating func onPauseElapsed(now: MonotonicTime) -> [Directive] {
        switch phase {
        case .watching(let until):
            if remaining.isEmpty {
                phase = .done
                return []
            }
            if now < until { return [.lookInHeartbeats] }
            // Not in any heartbeat yet: a controller that started a VM may not have re-joined a manager yet.
            phase = .asking(until: now + settings.askTime)
            return [.askControllers]
        case .asking:
            return [.askControllers]
        case .choosing, .done:
            preconditionFailure("a pause elapsed in recovery phase \(phase) of \(self)")
        }
    }

    /// MUST be invoked after an `.askControllers`: the VMs found (and recorded), how many controllers were asked
    /// and how many of them did not answer.
    public mutating func onAskedControllers(found: Set<String>, asked: Int, silent: Int, now: MonotonicTime) -> [Directive] {
        guard case .asking(let until) = phase else { preconditionFailure("controllers asked in recovery phase \(phase) of \(self)") }
        remaining.removeAll { found.contains($0) }
        if remaining.isEmpty {
            phase = .done
            return []
        }
        if silent == 0 && asked > 0 {
            phase = .choosing
            return [.chooseManager]
        }
        guard now < until else {
            phase = .done
            return [.fail(remaining, .unableToStartOnGroupManager,
                          "group manager \(manager) was lost with these VMs (\(reason)), and \(silent) local controller(s) could not be asked whether they run them")]
        }
        return [.pause(settings.askInterval)]
    }

    /// MUST be invoked after a `.chooseManager` with the leader's current view: the rest go to another manager, once.
    public mutating func onManagersView(_ managers: SubmissionPlanner.Managers) -> [Directive] {
        guard case .choosing = phase else { preconditionFailure("a manager chosen in recovery phase \(phase) of \(self)") }
        phase = .done
        guard let target = SubmissionPlanner.replacement(forLost: manager, in: managers) else {
            return [.fail(remaining, .unableToStartOnGroupManager, "group manager \(manager) unreachable (\(reason)) and no other manager is left")]
        }
        return [.move(remaining, to: target)]
    }
}
