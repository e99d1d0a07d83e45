/// One batch of a submission's VMs sent to one group manager, and what each outcome leads to: a manager that
/// does not answer is asked again (starting is idempotent per VM id on the manager, so asking again never starts
/// a VM twice), VMs it refused for want of room go to another manager, VMs it left unanswered fail, and a manager
/// gone with the VMs in hand is handed to `LostManagerRecovery`.
///
/// Pure: the shell sends, waits and records as told and feeds back what happened.
public struct ManagerDispatch: Sendable {
    public struct Settings: Sendable {
        /// Calls to a manager that does not answer before its VMs fail.
        public var attempts = 4
        /// How many managers a refused VM may move to. A manager whose view was out of date (its controllers just
        /// left or re-joined) refuses rarely; a cluster that is full refuses everywhere.
        public var moves = 2
        public init() {}
        /// The pause after a failed call, longer each time.
        public func backoff(afterAttempt attempt: Int) -> Duration { .milliseconds(250 * (attempt + 1)) }
    }

    public struct VM: Sendable, Equatable {
        public var id: String
        /// Pinned to a local controller (`hostId`): a refusal there is final, the VM goes nowhere else.
        public var pinned: Bool
        public init(id: String, pinned: Bool) {
            self.id = id
            self.pinned = pinned
        }
    }

    /// One VM of a manager's answer.
    public struct Answer: Sendable, Equatable {
        public var vm: String
        public var errorCode: VMErrorCode
        /// What the VM asks of a host (for finding another manager with room).
        public var demand: HostUsage
        public init(vm: String, errorCode: VMErrorCode, demand: HostUsage) {
            self.vm = vm
            self.errorCode = errorCode
            self.demand = demand
        }
    }

    public enum Directive: Sendable, Equatable {
        /// Ask the manager to start the batch, then invoke `onAnswer`, `onCallFailed` or, when the manager is
        /// not (or no longer) in the leader's view, `onManagerGone`. An attempt after the first is a retry.
        case send(attempt: Int)
        /// Wait, then invoke `onBackoffElapsed`.
        case backOff(Duration)
        /// The manager's answer for these VMs stands: record it.
        case record([String])
        /// The manager refused these VMs for want of room: dispatch them to `to` instead (a new
        /// `ManagerDispatch` with `tried`, which the VMs may not go back to).
        case move([String], to: ManagerInfo, tried: Set<NodeID>)
        case fail([String], VMErrorCode, String)
        /// The manager is gone with the VMs in hand: find out what its controllers run before placing them again.
        case recover(reason: String)
    }

    public let manager: NodeID
    public let vms: [VM]
    /// Managers the VMs were refused by before this one.
    public let tried: Set<NodeID>
    public var settings: Settings
    private var attempt = 0
    private var lastError = ""

    public init(manager: NodeID, vms: [VM], tried: Set<NodeID> = [], settings: Settings = Settings()) {
        self.manager = manager
        self.vms = vms
        self.tried = tried
        self.settings = settings
    }

    public func start() -> [Directive] { [.send(attempt: 0)] }

    /// Whether `onAnswer` needs the leader's view of the managers for this answer: only to move refused VMs.
    public func needsManagersView(for answers: [Answer]) -> Bool {
        !refused(in: answers).isEmpty && tried.count < settings.moves
    }

    /// MUST be invoked with the manager's answer, and (if `needsManagersView`) the leader's view of the managers.
    public func onAnswer(_ answers: [Answer], managers: SubmissionPlanner.Managers) -> [Directive] {
        let refused = refused(in: answers)
        if !refused.isEmpty, tried.count < settings.moves,
           let target = SubmissionPlanner.roomiestManager(for: refused.map(\.demand), avoiding: tried.union([manager]), in: managers) {
            var refusedIDs: [String] = []
            for answer in refused where !refusedIDs.contains(answer.vm) { refusedIDs.append(answer.vm) }
            return [.record(answers.map(\.vm).filter { !refusedIDs.contains($0) }),
                    .move(refusedIDs, to: target, tried: tried.union([manager]))]
        }
        var directives: [Directive] = [.record(answers.map(\.vm))]
        let answered = Set(answers.map(\.vm))
        let missing = vms.map(\.id).filter { !answered.contains($0) }
        if !missing.isEmpty {
            directives.append(.fail(missing, .invalidSubmissionResponse, "group manager \(manager) did not answer for these VMs"))
        }
        return directives
    }

    /// The VMs the manager had no room for and that may go elsewhere (not pinned to one of its controllers).
    private func refused(in answers: [Answer]) -> [Answer] {
        let pinned = Set(vms.filter(\.pinned).map(\.id))
        return answers.filter { $0.errorCode == .notEnoughLocalControllerCapacity && !pinned.contains($0.vm) }
    }

    /// MUST be invoked when the call failed (no answer, an error status); `message` says why.
    public mutating func onCallFailed(_ message: String) -> [Directive] {
        lastError = message
        return [.backOff(settings.backoff(afterAttempt: attempt))]
    }

    /// MUST be invoked once the pause of a `.backOff` has passed.
    public mutating func onBackoffElapsed() -> [Directive] {
        attempt += 1
        guard attempt < settings.attempts else { return [.fail(vms.map(\.id), .unableToStartOnGroupManager, lastError)] }
        return [.send(attempt: attempt)]
    }

    /// MUST be invoked when the manager is not in the leader's view (after the time a join takes).
    public mutating func onManagerGone() -> [Directive] {
        lastError = "group manager \(manager) is gone"
        return [.recover(reason: lastError)]
    }
}
