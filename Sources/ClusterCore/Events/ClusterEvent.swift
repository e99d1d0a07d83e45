/// One entry of the cluster's events stream (`GET /v1/events`, `doze events`): something an operator may want to
/// follow, stamped by the leader. `revision` orders every event of the cluster and survives leader changes (the
/// directory store counts them; on etcd it is the event key's own create revision, so it is increasing but not
/// contiguous). The fields that do not apply to a kind are nil and left out of the JSON.
public struct ClusterEvent: Sendable, Equatable, Codable {
    /// An open set of kinds: a client decodes kinds newer than itself.
    public struct Kind: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        public init(from decoder: any Decoder) throws { rawValue = try decoder.singleValueContainer().decode(String.self) }
        public func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            try container.encode(rawValue)
        }

        // VM states, as the leader's view shows them
        public static let vmRunning = Kind("vm.running")
        public static let vmSuspended = Kind("vm.suspended")
        public static let vmShuttingDown = Kind("vm.shutting-down")
        public static let vmShutOff = Kind("vm.shut-off")
        public static let vmError = Kind("vm.error")
        /// Its host is down (UNKNOWN in the views).
        public static let vmLost = Kind("vm.lost")
        public static let vmDestroyed = Kind("vm.destroyed")
        // Submissions
        public static let vmPlaced = Kind("vm.placed")
        public static let taskFinished = Kind("task.finished")
        // Migrations and what asked for them
        public static let migrationStarted = Kind("migration.started")
        public static let migrationFinished = Kind("migration.finished")
        public static let migrationFailed = Kind("migration.failed")
        public static let rebalanceMove = Kind("rebalance.move")
        public static let haRestart = Kind("ha.restart")
        // Hosts (local controllers)
        public static let hostUp = Kind("host.up")
        public static let hostDown = Kind("host.down")
        public static let hostDrained = Kind("host.drained")
        public static let hostUndrained = Kind("host.undrained")
        public static let hostAsleep = Kind("host.asleep")
        public static let hostAwake = Kind("host.awake")
        // Group managers and the leader
        public static let managerUp = Kind("manager.up")
        public static let managerDown = Kind("manager.down")
        public static let leaderElected = Kind("leader.elected")

        /// About hosts, managers or leaders: the admin's, not a tenant's.
        public var isInfrastructure: Bool {
            rawValue.hasPrefix("host.") || rawValue.hasPrefix("manager.") || rawValue.hasPrefix("leader.")
        }
    }

    /// 0 until the leader's journal stores the event.
    public var revision: Int64
    /// RFC 3339 UTC wall time, from the leader's clock; empty until stored.
    public var time: String
    public var kind: Kind
    public var vm: String?
    /// The local controller concerned (where the VM is, or the host itself).
    public var host: NodeID?
    public var manager: NodeID?
    public var task: String?
    /// The VM status behind a `vm.*` state event (Snooze's names: RUNNING, PAUSED, …).
    public var status: String?
    /// `task.finished`: `succeeded`, `failed` or `partial`.
    public var outcome: String?
    public var migration: String?
    public var source: NodeID?
    public var destination: NodeID?
    public var durationMs: UInt64?
    public var term: UInt64?
    public var leader: NodeID?
    /// Why: an error, the rebalancer's policy, a drain, the counts of a finished task.
    public var detail: String?
    /// The owner of the VM or task, once tenants exist; nil until then.
    public var tenant: String?

    public init(kind: Kind, vm: String? = nil, host: NodeID? = nil, manager: NodeID? = nil, task: String? = nil,
                status: String? = nil, outcome: String? = nil, migration: String? = nil, source: NodeID? = nil,
                destination: NodeID? = nil, durationMs: UInt64? = nil, term: UInt64? = nil, leader: NodeID? = nil,
                detail: String? = nil, tenant: String? = nil) {
        self.revision = 0
        self.time = ""
        self.kind = kind
        self.vm = vm
        self.host = host
        self.manager = manager
        self.task = task
        self.status = status
        self.outcome = outcome
        self.migration = migration
        self.source = source
        self.destination = destination
        self.durationMs = durationMs
        self.term = term
        self.leader = leader
        self.detail = detail
        self.tenant = tenant
    }
}

/// One answer of `GET /v1/events`: the events after `since` (oldest first, at most a page), and the newest
/// revision the leader has stored, so a client knows whether to ask again at once.
public struct EventPage: Sendable, Equatable, Codable {
    public var events: [ClusterEvent]
    public var latestRevision: Int64
    /// The oldest revision still kept (nil while none is).
    public var oldestRevision: Int64?
    /// Whether the leader has taken its first view (about two manager timeouts after its election): until then,
    /// VM and host changes become part of that view rather than events.
    public var watching: Bool?
    public init(events: [ClusterEvent], latestRevision: Int64, oldestRevision: Int64?) {
        self.events = events
        self.latestRevision = latestRevision
        self.oldestRevision = oldestRevision
    }

    /// For a tenant, whose page leaves out the others' events: the newest revision this answer looked at.
    public var scannedThrough: Int64?

    /// Where the next request resumes: the newest revision this answer covered, or `since` when it covered none.
    public func resume(after since: Int64?) -> Int64? {
        [events.last?.revision, scannedThrough, since].compactMap { $0 }.max()
    }

    /// The page as a principal limited to `tenant` sees it: its own VMs' and tasks' events, none of the
    /// infrastructure's (hosts, managers, leaders).
    public func scoped(to tenant: String, isOwn: (String?) -> Bool) -> EventPage {
        var page = self
        page.scannedThrough = events.last?.revision ?? scannedThrough
        page.events = events.filter { !$0.kind.isInfrastructure && isOwn($0.tenant) }
        return page
    }
}
