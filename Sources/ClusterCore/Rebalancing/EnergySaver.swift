/// Issue 12, energy saving (Snooze's power management, snooze.md §8.5): hosts that held no VM for `idleTime` are
/// put to sleep through a power agent, and woken when placement needs room. Pure (style.md §2): the shell feeds it
/// what the heartbeats show with `now`, carries out its directives (drain, run the agent, undrain) and reports
/// each agent's outcome.
///
/// A host's power goes `on → poweringOff → sleeping → waking → on`. While powering off the host is drained first
/// (no VM may land on it) and checked empty again before the agent runs; a host that got a VM meanwhile is kept.
/// A sleeping host's controller is gone from the hierarchy: this book is what remembers it.
public struct EnergySaver: Sendable {
    public struct Settings: Sendable, Equatable {
        /// How long a host must hold no VM before it is put to sleep.
        public var idleTime: Duration = .seconds(300)
        /// Hosts kept awake whatever happens (sleeping hosts are woken only on demand, and take time).
        public var minimumAwake = 1
        /// How long a woken host has to come back (its controller heard again) before the wake counts as failed.
        public var wakeTimeout: Duration = .seconds(120)
        /// How long a host stays drained-and-empty before the power-off agent runs (lets a placement in flight land).
        public var settleTime: Duration = .seconds(2)
        /// How long the books may still list a host after its controller stopped (heartbeat timeouts): a sleeping
        /// host seen within this time of going down is not taken as back.
        public var booksLag: Duration = .seconds(5)

        public init(configure: (inout Settings) -> Void = { _ in }) { configure(&self) }

        public func validated() throws(DozeError) -> Settings {
            guard idleTime > .zero else { throw DozeError(.badRequest, "energy saving idle time must be > 0, got \(idleTime)") }
            guard minimumAwake >= 1 else { throw DozeError(.badRequest, "at least 1 host must stay awake, got \(minimumAwake)") }
            guard wakeTimeout > .zero else { throw DozeError(.badRequest, "wake timeout must be > 0, got \(wakeTimeout)") }
            guard settleTime >= .zero else { throw DozeError(.badRequest, "settle time must be >= 0, got \(settleTime)") }
            return self
        }
    }

    public enum Power: String, Sendable, Equatable, Codable {
        case on
        case poweringOff = "powering-off"
        case sleeping, waking
    }

    /// A host as the hierarchy shows it now (only hosts whose controller is heard).
    public struct Host: Sendable, Equatable {
        public var id: NodeID
        /// Where its controller listened: what the agents are told, and what a sleeping host is listed with.
        public var address: Endpoint
        public var manager: NodeID
        public var vms: Int
        /// A migration is on its way to it, or away from it.
        public var migrating: Bool
        /// Drained by someone else (an operator): left alone, neither put to sleep nor counted as room.
        public var drainedByOperator: Bool
        /// What it may give (its quota), remembered while it sleeps.
        public var capacity: HostUsage

        public init(id: NodeID, address: Endpoint, manager: NodeID, vms: Int, migrating: Bool = false, drainedByOperator: Bool = false,
                    capacity: HostUsage = HostUsage()) {
            self.capacity = capacity
            self.id = id
            self.address = address
            self.manager = manager
            self.vms = vms
            self.migrating = migrating
            self.drainedByOperator = drainedByOperator
        }
    }

    /// A host that is not simply on: what it was, since when, and what went wrong last.
    public struct Record: Sendable, Equatable {
        public var id: NodeID
        public var address: Endpoint
        public var manager: NodeID
        public var capacity: HostUsage
        public var power: Power
        public var since: MonotonicTime
        /// Drained by this energy saver (to be undrained when it is back).
        public var drained: Bool
        public var lastError: String?
        /// The power-off agent has been asked to run.
        public var agentStarted = false
    }

    public enum Directive: Sendable, Equatable {
        /// Mark the host unschedulable, so nothing lands on it while it powers off.
        case drain(NodeID)
        /// Run the power-off agent; report with `onPowerOffFinished`.
        case powerOff(NodeID, Endpoint)
        /// Run the wake agent; report with `onWakeFinished`.
        case wake(NodeID, Endpoint)
        /// The host is back (or was never put down): make it schedulable again.
        case undrain(NodeID)
    }

    public let settings: Settings
    public private(set) var records: [NodeID: Record] = [:]
    public private(set) var idleSince: [NodeID: MonotonicTime] = [:]
    /// Hosts seen in the last observation.
    public private(set) var awake: Set<NodeID> = []

    public init(settings: Settings = Settings()) throws(DozeError) {
        self.settings = try settings.validated()
    }

    public func power(of host: NodeID) -> Power { records[host]?.power ?? .on }

    public var sleeping: [Record] { records.values.filter { $0.power == .sleeping }.sorted { $0.id < $1.id } }

    // MARK: - Events

    /// MUST be invoked with every fresh view of the hosts whose controllers are heard.
    public mutating func onObservation(_ hosts: [Host], now: MonotonicTime) -> [Directive] {
        var directives: [Directive] = []
        let seen = Dictionary(hosts.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        awake = Set(seen.keys)
        for (id, record) in records {
            switch record.power {
            case .waking, .sleeping:
                // Heard again: it woke (or came back by itself, e.g. an operator powered it on).
                if let host = seen[id], record.power == .waking || now - record.since >= settings.booksLag {
                    records[id] = nil
                    idleSince[id] = host.vms == 0 ? now : nil
                    if record.drained { directives.append(.undrain(id)) }
                } else if record.power == .waking, now - record.since >= settings.wakeTimeout {
                    records[id]?.power = .sleeping
                    records[id]?.since = now
                    records[id]?.lastError = "did not come back within \(settings.wakeTimeout) of being woken"
                }
            case .poweringOff:
                guard let host = seen[id] else { continue }   // the agent runs; its outcome decides
                if host.vms > 0 || host.migrating {
                    // Something landed before the drain took effect: keep it on.
                    records[id] = nil
                    idleSince[id] = nil
                    if record.drained { directives.append(.undrain(id)) }
                } else if record.drained && now - record.since >= settings.settleTime && !record.agentStarted {
                    records[id]?.agentStarted = true
                    directives.append(.powerOff(id, host.address))
                }
            case .on:
                records[id] = nil
            }
        }
        for host in hosts.sorted(by: { $0.id < $1.id }) where records[host.id] == nil {
            if host.vms == 0 && !host.migrating && !host.drainedByOperator {
                if idleSince[host.id] == nil { idleSince[host.id] = now }
            } else {
                idleSince[host.id] = nil
            }
        }
        idleSince = idleSince.filter { seen[$0.key] != nil }
        // One host at a time goes down, and never below the minimum of hosts on.
        let on = hosts.filter { records[$0.id] == nil }.count
        let goingDown = records.values.contains { $0.power == .poweringOff }
        // A host was just woken for room: what it brought is about to be used, so nothing else goes down yet.
        let holdOff = lastWake.map { now - $0 < settings.idleTime } ?? false
        if !goingDown, !holdOff, on > settings.minimumAwake,
           let candidate = hosts.sorted(by: { $0.id < $1.id }).first(where: { host in
               records[host.id] == nil && idleSince[host.id].map { now - $0 >= settings.idleTime } == true
           }) {
            records[candidate.id] = Record(id: candidate.id, address: candidate.address, manager: candidate.manager,
                                           capacity: candidate.capacity, power: .poweringOff, since: now, drained: true)
            directives.append(.drain(candidate.id))
        }
        return directives
    }

    /// A new leader takes over the hosts an earlier one put to sleep (from the records): asleep, drained by us.
    public mutating func restore(sleeping hosts: [(id: NodeID, address: Endpoint, manager: NodeID, capacity: HostUsage)], now: MonotonicTime) {
        for host in hosts where records[host.id] == nil {
            records[host.id] = Record(id: host.id, address: host.address, manager: host.manager, capacity: host.capacity,
                                      power: .sleeping, since: now, drained: true)
        }
    }

    /// MUST be invoked when the power-off agent ends. A failure keeps the host on (undrained) and idle from now,
    /// so it is tried again after another idle time.
    public mutating func onPowerOffFinished(_ host: NodeID, error: String?, now: MonotonicTime) -> [Directive] {
        guard let record = records[host], record.power == .poweringOff else { return [] }
        if let error {
            records[host] = nil
            idleSince[host] = now
            lastFailures[host] = error
            return record.drained ? [.undrain(host)] : []
        }
        records[host]?.power = .sleeping
        records[host]?.since = now
        records[host]?.lastError = nil
        lastFailures[host] = nil
        return []
    }

    /// Placement found no room: wakes the sleeping host asleep longest, unless one is already waking (then nil:
    /// wait for that one). Returns the host woken.
    public mutating func wakeForRoom(now: MonotonicTime) -> Directive? {
        guard !records.values.contains(where: { $0.power == .waking }) else { return nil }
        guard let host = records.values.filter({ $0.power == .sleeping }).min(by: { ($0.since, $0.id) < ($1.since, $1.id) }) else { return nil }
        records[host.id]?.power = .waking
        records[host.id]?.since = now
        lastWake = now
        return .wake(host.id, host.address)
    }

    public var isWaking: Bool { records.values.contains { $0.power == .waking } }

    /// MUST be invoked when the wake agent ends; success only means the command ran: the host is on once heard.
    public mutating func onWakeFinished(_ host: NodeID, error: String?, now: MonotonicTime) {
        guard records[host]?.power == .waking, let error else { return }
        records[host]?.power = .sleeping
        records[host]?.since = now
        records[host]?.lastError = "the wake command failed: \(error)"
    }

    /// When a host was last woken for room.
    public private(set) var lastWake: MonotonicTime?

    /// Why the last power-off of a host failed (for the host list), until it next succeeds.
    public private(set) var lastFailures: [NodeID: String] = [:]
}
