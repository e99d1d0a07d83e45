/// What the leader sees of the cluster at one moment, reduced to what events are made of. The leader builds one
/// from its books (summaries, the managers' VM lists, tasks, migrations, HA and energy books) every few ticks.
public struct ClusterSnapshot: Sendable, Equatable {
    public struct VM: Sendable, Equatable {
        public var status: VMStatus
        public var host: NodeID?
        /// Its owner (nil: made before tenants, the default tenant's).
        public var tenant: String?
        public init(status: VMStatus, host: NodeID?, tenant: String? = nil) {
            self.status = status
            self.host = host
            self.tenant = tenant
        }
    }

    public struct Task: Sendable, Equatable {
        /// VM → the local controller it was placed on (nil until placed).
        public var placements: [String: NodeID?]
        public var isFinal: Bool
        public var running: Int
        public var failed: Int
        public var tenant: String?
        public init(placements: [String: NodeID?], isFinal: Bool, running: Int, failed: Int, tenant: String? = nil) {
            self.tenant = tenant
            self.placements = placements
            self.isFinal = isFinal
            self.running = running
            self.failed = failed
        }
    }

    public struct Migration: Sendable, Equatable {
        public var vm: String
        public var source: NodeID
        public var destination: NodeID
        /// `queued`, `running`, `completed`, `failed`, `aborted`.
        public var state: String
        public var durationMs: UInt64?
        public var error: String?
        /// The rebalancer's policy, when it asked for the move.
        public var reason: String?
        public var drain: String?
        public init(vm: String, source: NodeID, destination: NodeID, state: String, durationMs: UInt64? = nil,
                    error: String? = nil, reason: String? = nil, drain: String? = nil) {
            self.vm = vm
            self.source = source
            self.destination = destination
            self.state = state
            self.durationMs = durationMs
            self.error = error
            self.reason = reason
            self.drain = drain
        }
        var isFinal: Bool { state == "completed" || state == "failed" || state == "aborted" }
    }

    public struct Host: Sendable, Equatable {
        /// In a manager's summary (a host asleep is not).
        public var present: Bool
        public var manager: NodeID?
        public var draining: Bool
        /// The energy saver's word: `on`, `powering-off`, `sleeping`, `waking`; nil when it does not know the host.
        public var power: String?
        public init(present: Bool, manager: NodeID?, draining: Bool, power: String? = nil) {
            self.present = present
            self.manager = manager
            self.draining = draining
            self.power = power
        }
    }

    public var vms: [String: VM]
    public var tasks: [String: Task]
    public var migrations: [String: Migration]
    public var hosts: [NodeID: Host]
    /// HA VMs being restarted elsewhere → the host they were lost from.
    public var restarting: [String: NodeID]
    /// The VM names in the managers' summaries: a VM still named there but missing from `vms` (its manager did not
    /// answer in time) has not gone.
    public var reported: Set<String>

    public init(vms: [String: VM] = [:], tasks: [String: Task] = [:], migrations: [String: Migration] = [:],
                hosts: [NodeID: Host] = [:], restarting: [String: NodeID] = [:], reported: Set<String>? = nil) {
        self.reported = reported ?? Set(vms.keys)
        self.vms = vms
        self.tasks = tasks
        self.migrations = migrations
        self.hosts = hosts
        self.restarting = restarting
    }
}

/// Turns the leader's successive views into events, by difference: the first view is the baseline (a new leader
/// does not announce what was already there), each later one yields what changed since the one before. Pure.
public struct ClusterObserver: Sendable {
    private var last: ClusterSnapshot?

    public init() {}

    /// Whether a baseline was taken.
    public var hasBaseline: Bool { last != nil }

    /// MUST be invoked with each new view of the cluster; returns the events it implies, in a stable order
    /// (hosts, placements, migrations, HA restarts, VM states, finished tasks).
    public mutating func onSnapshot(_ view: ClusterSnapshot) -> [ClusterEvent] {
        guard let last else {
            last = view
            return []
        }
        let next = Self.carryingOver(last, into: view)
        defer { self.last = next }
        var events: [ClusterEvent] = []
        events += Self.hostEvents(last.hosts, next.hosts)
        events += Self.placementEvents(last.tasks, next.tasks)
        var moves = Self.migrationEvents(last.migrations, next.migrations)
        for (vm, host) in next.restarting.sorted(by: { $0.key < $1.key }) where last.restarting[vm] == nil {
            moves.append(ClusterEvent(kind: .haRestart, vm: vm, source: host))
        }
        // A move's owner is its VM's.
        for index in moves.indices { moves[index].tenant = moves[index].vm.flatMap { next.vms[$0]?.tenant ?? last.vms[$0]?.tenant } }
        events += moves
        events += Self.vmEvents(last.vms, next.vms)
        events += Self.taskEvents(last.tasks, next.tasks)
        return events
    }

    /// A VM missing from the new view has gone only if no summary names it any more and its host is still there:
    /// a silent manager or a host that vanished (the HA books mark its VMs UNKNOWN if it died) is not a destroy.
    static func carryingOver(_ last: ClusterSnapshot, into view: ClusterSnapshot) -> ClusterSnapshot {
        var next = view
        for (name, vm) in last.vms where next.vms[name] == nil {
            let hostGone = vm.host.map { next.hosts[$0]?.present != true } ?? false
            if next.reported.contains(name) || hostGone { next.vms[name] = vm }
        }
        return next
    }

    /// The event a VM status stands for.
    public static func kind(of status: VMStatus) -> ClusterEvent.Kind {
        switch status {
        case .running: .vmRunning
        case .paused: .vmSuspended
        case .shutdownPending: .vmShuttingDown
        case .offline: .vmShutOff
        case .error: .vmError
        case .unknown: .vmLost
        }
    }

    static func vmEvents(_ before: [String: ClusterSnapshot.VM], _ after: [String: ClusterSnapshot.VM]) -> [ClusterEvent] {
        var events: [ClusterEvent] = []
        for (name, vm) in after.sorted(by: { $0.key < $1.key }) {
            // A move keeps the status: the migration events tell it.
            guard before[name]?.status != vm.status else { continue }
            events.append(ClusterEvent(kind: kind(of: vm.status), vm: name, host: vm.host, status: vm.status.rawValue, tenant: vm.tenant))
        }
        for (name, vm) in before.sorted(by: { $0.key < $1.key }) where after[name] == nil {
            events.append(ClusterEvent(kind: .vmDestroyed, vm: name, host: vm.host, tenant: vm.tenant))
        }
        return events
    }

    static func placementEvents(_ before: [String: ClusterSnapshot.Task], _ after: [String: ClusterSnapshot.Task]) -> [ClusterEvent] {
        var events: [ClusterEvent] = []
        for (id, task) in after.sorted(by: { $0.key < $1.key }) {
            for (vm, host) in task.placements.sorted(by: { $0.key < $1.key }) {
                guard let host, before[id]?.placements[vm] != .some(host) else { continue }
                events.append(ClusterEvent(kind: .vmPlaced, vm: vm, host: host, task: id, tenant: task.tenant))
            }
        }
        return events
    }

    static func taskEvents(_ before: [String: ClusterSnapshot.Task], _ after: [String: ClusterSnapshot.Task]) -> [ClusterEvent] {
        after.sorted(by: { $0.key < $1.key }).compactMap { id, task in
            guard task.isFinal, before[id]?.isFinal != true else { return nil }
            let outcome = task.failed == 0 ? "succeeded" : task.running == 0 ? "failed" : "partial"
            return ClusterEvent(kind: .taskFinished, task: id, outcome: outcome,
                                detail: "running \(task.running)/\(task.placements.count), failed \(task.failed)/\(task.placements.count)",
                                tenant: task.tenant)
        }
    }

    static func migrationEvents(_ before: [String: ClusterSnapshot.Migration], _ after: [String: ClusterSnapshot.Migration]) -> [ClusterEvent] {
        var events: [ClusterEvent] = []
        for (id, migration) in after.sorted(by: { $0.key < $1.key }) {
            let known = before[id]
            if known == nil {
                let why = migration.reason ?? migration.drain.map { "drain \($0)" }
                events.append(ClusterEvent(kind: .migrationStarted, vm: migration.vm, migration: id, source: migration.source,
                                           destination: migration.destination, detail: why))
                if let reason = migration.reason {
                    events.append(ClusterEvent(kind: .rebalanceMove, vm: migration.vm, migration: id, source: migration.source,
                                               destination: migration.destination, detail: reason))
                }
            }
            // Seen final for the first time (a short migration may start and end between two views).
            guard migration.isFinal, known?.isFinal != true else { continue }
            let succeeded = migration.state == "completed"
            events.append(ClusterEvent(kind: succeeded ? .migrationFinished : .migrationFailed, vm: migration.vm, status: migration.state,
                                       migration: id, source: migration.source, destination: migration.destination,
                                       durationMs: migration.durationMs, detail: succeeded ? nil : migration.error))
        }
        return events
    }

    static func hostEvents(_ before: [NodeID: ClusterSnapshot.Host], _ after: [NodeID: ClusterSnapshot.Host]) -> [ClusterEvent] {
        var events: [ClusterEvent] = []
        let ids = Set(before.keys).union(after.keys).sorted()
        for id in ids {
            let old = before[id], new = after[id]
            let asleep = { (host: ClusterSnapshot.Host?) in host?.power == "sleeping" || host?.power == "powering-off" }
            if asleep(new) && !asleep(old) {
                events.append(ClusterEvent(kind: .hostAsleep, host: id, manager: new?.manager ?? old?.manager))
            } else if asleep(old) && !asleep(new) && new != nil {
                events.append(ClusterEvent(kind: .hostAwake, host: id, manager: new?.manager))
            }
            let wasPresent = old?.present == true, isPresent = new?.present == true
            if isPresent && !wasPresent {
                events.append(ClusterEvent(kind: .hostUp, host: id, manager: new?.manager))
            } else if wasPresent && !isPresent && !asleep(new) {
                // A host put to sleep leaves the summaries on purpose: `host.asleep` said so.
                events.append(ClusterEvent(kind: .hostDown, host: id, manager: old?.manager))
            }
            if isPresent && wasPresent, let old, let new, old.draining != new.draining {
                events.append(ClusterEvent(kind: new.draining ? .hostDrained : .hostUndrained, host: id, manager: new.manager))
            } else if isPresent && !wasPresent && new?.draining == true && old?.draining != true {
                events.append(ClusterEvent(kind: .hostDrained, host: id, manager: new?.manager))
            }
        }
        return events
    }
}

extension ClusterEvent {
    /// The event a membership directive of the leader stands for (nil for those an operator need not see).
    public static func membership(_ directive: GroupLeaderState.Directive) -> ClusterEvent? {
        switch directive {
        case .managerJoined(let manager): ClusterEvent(kind: .managerUp, manager: manager.id)
        case .managerDown(let manager, let controllers):
            ClusterEvent(kind: .managerDown, manager: manager.id, detail: "\(controllers.count) controller(s) re-join elsewhere")
        // The view's difference reports the host (a controller moving between managers is not down).
        case .controllerDown, .ignoredStaleTerm: nil
        }
    }
}
