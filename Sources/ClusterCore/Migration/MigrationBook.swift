/// The leader's book of migrations: which VMs are moving, how many migrations each host takes part in, and
/// which wait for a free slot. Pure (time comes in as `now`); the `MigrationCoordinator` actor owns one and does
/// the IO its answers call for.
///
/// Rules: one migration per VM at a time; source and destination differ; a host takes part in at most
/// `limitPerHost` running migrations (as source or destination). A migration over the limit is refused, unless
/// the caller asks to queue it (a drain does): queued ones start in order as slots free up.
public struct MigrationBook: Sendable {
    public enum Phase: Sendable, Equatable {
        case queued, running, finished
    }

    public struct Entry: Sendable, Equatable {
        public var id: String
        public var vm: String
        public var source: NodeID
        public var destination: NodeID
        /// Room held on the destination until the move is over.
        public var demand: HostUsage
        public var phase: Phase
        public var acceptedAt: MonotonicTime
        public var finishedAt: MonotonicTime?
    }

    public enum Refusal: Error, Sendable, Equatable {
        case sameHost(NodeID)
        case alreadyMigrating(vm: String, id: String)
        case hostBusy(host: NodeID, limit: Int)
        case noSuchMigration(String)
    }

    public var limitPerHost: Int
    public private(set) var entries: [String: Entry] = [:]
    /// Queued migration ids, oldest first.
    public private(set) var queue: [String] = []

    public init(limitPerHost: Int) {
        self.limitPerHost = max(1, limitPerHost)
    }

    /// Running migrations `host` takes part in, as source or destination.
    public func running(on host: NodeID) -> Int {
        entries.values.reduce(0) { $0 + ($1.phase == .running && ($1.source == host || $1.destination == host) ? 1 : 0) }
    }

    /// Room promised to VMs on their way to `host` (queued or running).
    public func incoming(to host: NodeID) -> HostUsage {
        entries.values.reduce(HostUsage()) { $1.phase != .finished && $1.destination == host ? $0 + $1.demand : $0 }
    }

    /// The unfinished migration of `vm`, if any.
    public func active(vm: String) -> Entry? {
        entries.values.first { $0.vm == vm && $0.phase != .finished }
    }

    private func hasSlot(_ source: NodeID, _ destination: NodeID) -> Bool {
        running(on: source) < limitPerHost && running(on: destination) < limitPerHost
    }

    /// Admits a migration: `.running` when it may start now, `.queued` when `queue` is set and a host is busy.
    public mutating func admit(id: String, vm: String, source: NodeID, destination: NodeID, demand: HostUsage,
                               queue allowQueue: Bool = false, now: MonotonicTime) -> Result<Phase, Refusal> {
        guard source != destination else { return .failure(.sameHost(source)) }
        if let other = active(vm: vm) { return .failure(.alreadyMigrating(vm: vm, id: other.id)) }
        let phase: Phase
        if hasSlot(source, destination) {
            phase = .running
        } else if allowQueue {
            phase = .queued
        } else {
            let busy = running(on: source) >= limitPerHost ? source : destination
            return .failure(.hostBusy(host: busy, limit: limitPerHost))
        }
        entries[id] = Entry(id: id, vm: vm, source: source, destination: destination, demand: demand, phase: phase,
                            acceptedAt: now)
        if phase == .queued { queue.append(id) }
        return .success(phase)
    }

    /// Ends a migration (whatever its outcome) and returns the queued ones that may start now, in order.
    public mutating func finish(_ id: String, now: MonotonicTime) -> [String] {
        guard var entry = entries[id], entry.phase != .finished else { return [] }
        entry.phase = .finished
        entry.finishedAt = now
        entries[id] = entry
        queue.removeAll { $0 == id }
        return startable()
    }

    /// Queued migrations that now have a slot on both hosts; they are marked running.
    public mutating func startable() -> [String] {
        var started: [String] = []
        for id in queue {
            guard let entry = entries[id], hasSlot(entry.source, entry.destination) else { continue }
            entries[id]?.phase = .running
            started.append(id)
        }
        queue.removeAll { started.contains($0) }
        return started
    }

    /// Forgets finished migrations older than `keep`.
    public mutating func prune(now: MonotonicTime, keep: Duration) {
        for (id, e) in entries where e.phase == .finished && (e.finishedAt.map { now - $0 > keep } ?? false) {
            entries[id] = nil
        }
    }
}
