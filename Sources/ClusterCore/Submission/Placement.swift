/// Where a VM can go: the capacity left on each candidate (a manager's aggregate, or one controller), with the
/// reservations of submissions still in flight already taken off, so concurrent submissions never over-commit.
public struct PlacementCandidate: Sendable, Equatable {
    public var id: NodeID
    public var free: HostUsage          // vCPUs and memory still admissible under the host quota
    public var schedulable: Bool
    public init(id: NodeID, free: HostUsage, schedulable: Bool = true) {
        self.id = id
        self.free = free
        self.schedulable = schedulable
    }
}

public enum PlacementPolicy: String, Sendable, Codable, CaseIterable {
    case firstFit = "first-fit"
    /// Rotates through candidates across submissions.
    case roundRobin = "round-robin"
    /// The candidate with the most free capacity (spreads load).
    case leastLoaded = "least-loaded"
}

/// Picks candidates for VMs and keeps the reservations it made until they are settled. Pure: one instance per
/// placement level (the leader over managers, a manager over its controllers), owned by one actor.
public struct Placement: Sendable {
    public enum Failure: Error, Equatable, Sendable {
        /// No candidate has room; `largestFree` is what the roomiest one had.
        case notEnoughCapacity(demand: HostUsage, largestFree: HostUsage?)
        case unknownHost(NodeID)
        case hostUnschedulable(NodeID)
    }

    public var policy: PlacementPolicy
    private var rotation = 0
    /// In-flight reservations: submission-scoped keys (e.g. VM ids) → (candidate, demand).
    public private(set) var reservations: [String: (candidate: NodeID, demand: HostUsage)] = [:]
    /// The same reservations summed per candidate (placing 1,000 VMs must not rescan them all per VM).
    private var reservedTotals: [NodeID: HostUsage] = [:]

    public init(policy: PlacementPolicy) {
        self.policy = policy
    }

    func reserved(on id: NodeID) -> HostUsage { reservedTotals[id] ?? HostUsage() }

    private mutating func reserve(_ key: String, on id: NodeID, _ demand: HostUsage) {
        settle(key)
        reservations[key] = (id, demand)
        reservedTotals[id, default: HostUsage()] = reservedTotals[id, default: HostUsage()] + demand
    }

    /// Chooses a candidate for `demand` and reserves it under `key`. `pinned` forces one candidate (Snooze's
    /// `hostId`); it must exist and have room.
    public mutating func place(_ key: String, demand: HostUsage, among candidates: [PlacementCandidate],
                               pinned: NodeID? = nil) -> Result<NodeID, Failure> {
        // What each candidate has left once in-flight reservations are taken off.
        var left: [NodeID: HostUsage] = [:]
        for candidate in candidates { left[candidate.id] = candidate.free - reserved(on: candidate.id) }
        let fits: (PlacementCandidate) -> Bool = { candidate in
            let remaining = left[candidate.id] ?? HostUsage()
            return remaining.vcpus >= demand.vcpus && remaining.memoryMiB >= demand.memoryMiB
        }
        let ordered = candidates.sorted { $0.id < $1.id }
        if let pinned {
            guard let candidate = ordered.first(where: { $0.id == pinned }) else { return .failure(.unknownHost(pinned)) }
            guard candidate.schedulable else { return .failure(.hostUnschedulable(pinned)) }
            guard fits(candidate) else { return .failure(.notEnoughCapacity(demand: demand, largestFree: left[candidate.id])) }
            reserve(key, on: candidate.id, demand)
            return .success(candidate.id)
        }
        let usable = ordered.filter { $0.schedulable }
        var chosen: PlacementCandidate?
        switch policy {
        case .firstFit:
            chosen = usable.first(where: fits)
        case .roundRobin:
            for offset in usable.indices {
                let index = (offset + rotation) % usable.count
                if fits(usable[index]) {
                    chosen = usable[index]
                    rotation = index + 1
                    break
                }
            }
        case .leastLoaded:
            chosen = usable.filter(fits).max { lhs, rhs in
                let lhsLeft = left[lhs.id]!, rhsLeft = left[rhs.id]!
                return (lhsLeft.memoryMiB, lhsLeft.vcpus, rhs.id) < (rhsLeft.memoryMiB, rhsLeft.vcpus, lhs.id)
            }
        }
        guard let chosen else {
            let largest = usable.compactMap { left[$0.id] }.max { ($0.memoryMiB, $0.vcpus) < ($1.memoryMiB, $1.vcpus) }
            return .failure(.notEnoughCapacity(demand: demand, largestFree: largest))
        }
        reserve(key, on: chosen.id, demand)
        return .success(chosen.id)
    }

    /// The VM started (its usage now shows in the candidate's reports) or failed: the reservation goes.
    public mutating func settle(_ key: String) {
        guard let reservation = reservations.removeValue(forKey: key) else { return }
        let left = (reservedTotals[reservation.candidate] ?? HostUsage()) - reservation.demand
        reservedTotals[reservation.candidate] = left == HostUsage() ? nil : left
    }
}
