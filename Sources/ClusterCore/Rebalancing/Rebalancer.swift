/// Issue 12, "the cluster manages itself": decides which VMs to live-migrate so that no host stays overloaded,
/// underloaded hosts are emptied and reported idle, and (when asked) VMs are periodically packed onto fewer
/// hosts — Snooze's overload / underload relocation and Sercon consolidation (snooze.md §8.3–8.4).
///
/// A pure Instance (style.md §2): no IO, no clock. A shell feeds it observations of hosts and VMs with `now`,
/// carries out the `.migrate` directives (through `MigrationBook`; a dry run just logs them) and reports each
/// move's end with `onMoveFinished`. Named "Rebalancer" because it only plans; who moves is the shell's business.
///
/// Units: a VM's CPU is **vCPUs in use** (1.5 = one and a half cores busy, what Snooze's Δcputime/Δwall gives),
/// memory is MiB. Thresholds are fractions of a host's capacity; pass as capacity what the host may give
/// (its quota ceiling, overcommit included). Usage comes in already smoothed (`UsageEstimator`).
///
/// Each round, in this order, sharing one migration budget and one projected layout:
/// 1. overload relocation — most overloaded host first;
/// 2. underload relocation — least loaded host first; all of its VMs or none;
/// 3. idle report — a host empty for the dwell time gets `.markIdle` once;
/// 4. consolidation — when the interval has passed.
public struct Rebalancer: Sendable {
    // MARK: - Inputs

    public struct Host: Sendable, Equatable {
        public var id: NodeID
        public var capacity: HostUsage
        /// Being drained: the drain moves its VMs; the rebalancer neither takes from it nor gives to it.
        public var draining: Bool
        /// Powered down or suspended by the energy saver (Snooze's PASSIVE): never a target, never woken here.
        public var asleep: Bool
        /// False when placement may not use it (cordoned, or its controller is suspect).
        public var schedulable: Bool

        public init(id: NodeID, capacity: HostUsage, draining: Bool = false, asleep: Bool = false, schedulable: Bool = true) {
            self.id = id
            self.capacity = capacity
            self.draining = draining
            self.asleep = asleep
            self.schedulable = schedulable
        }
    }

    public struct VM: Sendable, Equatable {
        public enum State: Sendable, Equatable {
            case running, migrating, suspended
        }

        public var id: String
        public var host: NodeID
        /// Estimated vCPUs in use (not a fraction): 0 … the VM's vCPU count.
        public var cpuInUse: Double
        /// Estimated memory in use, MiB: what counts towards the memory threshold.
        public var memoryUsedMiB: Double
        /// Memory the VM asked for, MiB: a target must have room for all of it (a guest may grow to it).
        public var requestedMemoryMiB: Int
        /// vCPUs the VM was given: a target's quota must hold all of them (placement and controllers count them).
        public var requestedVCPUs: Int
        public var state: State
        /// Pinned to its host (Snooze's `hostId`): never moved.
        public var pinned: Bool
        /// VMs of the same app that must run on other hosts than this one (checked both ways).
        public var mustNotShareHostWith: Set<String>

        public init(id: String, host: NodeID, cpuInUse: Double, memoryUsedMiB: Double, requestedMemoryMiB: Int? = nil,
                    requestedVCPUs: Int? = nil, state: State = .running, pinned: Bool = false, mustNotShareHostWith: Set<String> = []) {
            self.requestedVCPUs = requestedVCPUs ?? Int(cpuInUse.rounded(.up))
            self.id = id
            self.host = host
            self.cpuInUse = cpuInUse
            self.memoryUsedMiB = memoryUsedMiB
            self.requestedMemoryMiB = requestedMemoryMiB ?? Int(memoryUsedMiB.rounded(.up))
            self.state = state
            self.pinned = pinned
            self.mustNotShareHostWith = mustNotShareHostWith
        }
    }

    // MARK: - Outputs

    public enum Reason: String, Sendable, Equatable {
        case overload, underload, consolidation
    }

    public struct Move: Sendable, Equatable, CustomStringConvertible {
        public var vm: String
        public var from: NodeID
        public var to: NodeID
        public var reason: Reason

        public init(vm: String, from: NodeID, to: NodeID, reason: Reason) {
            self.vm = vm
            self.from = from
            self.to = to
            self.reason = reason
        }

        public var description: String { "\(vm): \(from) → \(to) (\(reason.rawValue))" }
    }

    public enum Subject: Sendable, Equatable {
        case host(NodeID)
        case vm(String)
    }

    public enum Directive: Sendable, Equatable {
        /// Live-migrate; report the end with `onMoveFinished`.
        case migrate(Move)
        /// The host holds no VM and has for the dwell time: the energy saver may put it to sleep. Sent once
        /// until the host holds VMs again or has been asleep.
        case markIdle(NodeID)
        /// Something the policies wanted but could not do, and why (for logs and `doze host` status).
        case refused(Subject, String)
    }

    // MARK: - State

    public let settings: Settings
    /// Hosts in the overloaded state (entered above `high`, left below `high - hysteresis`), since when.
    public private(set) var overloadedSince: [NodeID: MonotonicTime] = [:]
    public private(set) var underloadedSince: [NodeID: MonotonicTime] = [:]
    public private(set) var emptySince: [NodeID: MonotonicTime] = [:]
    public private(set) var reportedIdle: Set<NodeID> = []
    /// When each VM's last move started or ended: it stays put for `cooldown` after.
    public private(set) var lastMoved: [String: MonotonicTime] = [:]
    /// Moves handed out and not finished yet.
    public private(set) var inFlight: [String: Move] = [:]
    /// Moves that succeeded but that observations do not show yet: their VMs count at the destination.
    public private(set) var landed: [String: Move] = [:]
    public private(set) var nextConsolidation: MonotonicTime?

    public init(settings: Settings = Settings()) throws(DozeError) {
        self.settings = try settings.validated()
    }

    // MARK: - Events

    /// MUST be invoked with every fresh view of the hosts and VMs this rebalancer governs (e.g. after each
    /// round of heartbeats); `now` never goes backwards. Returns this round's plan.
    public mutating func onObservation(hosts: [Host], vms: [VM], now: MonotonicTime) -> [Directive] {
        var layout = Layout(settings: settings, hosts: hosts, vms: vms)
        reconcileMoves(with: vms, into: &layout)
        forgetVanished(layout, now: now)
        updateHostStates(layout, now: now)

        var round = Round(settings: settings, layout: layout, now: now, rebalancer: self)
        round.relieveOverloadedHosts()
        round.emptyUnderloadedHosts()
        for host in round.idleHosts() {
            reportedIdle.insert(host)
            round.directives.append(.markIdle(host))
        }
        if let due = nextConsolidation, now >= due {
            round.consolidate()
            nextConsolidation = now + settings.consolidationInterval!
        } else if nextConsolidation == nil, let interval = settings.consolidationInterval {
            nextConsolidation = now + interval   // the first round waits one interval: estimates need history
        }
        for move in round.moves {
            inFlight[move.vm] = move
            lastMoved[move.vm] = now
        }
        return round.directives
    }

    /// MUST be invoked when a migration this rebalancer asked for ends, well or not. Either way the VM then
    /// stays put for the cool-down (a failing move is not retried at once).
    public mutating func onMoveFinished(vm: String, succeeded: Bool, now: MonotonicTime) {
        guard let move = inFlight.removeValue(forKey: vm) else { return }
        lastMoved[vm] = now
        if succeeded { landed[vm] = move }
    }

    /// MUST be invoked for a move the shell did not carry out at all (a dry run): it is forgotten as if never
    /// planned, with no cool-down, so the next round plans it again while the host stays as it is.
    public mutating func withdraw(_ move: Move) {
        guard inFlight[move.vm] == move else { return }
        inFlight[move.vm] = nil
        lastMoved[move.vm] = nil
    }

    /// Whether the host is in the overloaded or underloaded state now (entered, hysteresis not yet left).
    public func condition(of host: NodeID) -> HostCondition {
        if overloadedSince[host] != nil { return .overloaded }
        if underloadedSince[host] != nil { return .underloaded }
        if reportedIdle.contains(host) { return .idle }
        if emptySince[host] != nil { return .empty }
        return .normal
    }

    public enum HostCondition: String, Sendable, Equatable {
        case overloaded, underloaded, normal, empty, idle
    }

    // MARK: - Bookkeeping

    /// Unfinished and just-landed moves count at their destination; a landed move is forgotten once the
    /// observation shows the VM there (or not at all), a move is dropped when the VM turned up elsewhere.
    private mutating func reconcileMoves(with vms: [VM], into layout: inout Layout) {
        let observed = Dictionary(vms.map { ($0.id, $0.host) }, uniquingKeysWith: { first, _ in first })
        for (vm, move) in landed {
            guard let host = observed[vm], host == move.from else { landed[vm] = nil; continue }
            layout.move(vm, to: move.to)
        }
        for (vm, move) in inFlight {
            guard let host = observed[vm] else { continue }
            if host == move.from { layout.move(vm, to: move.to) }
        }
    }

    private mutating func forgetVanished(_ layout: Layout, now: MonotonicTime) {
        overloadedSince = overloadedSince.filter { layout.hosts[$0.key] != nil }
        underloadedSince = underloadedSince.filter { layout.hosts[$0.key] != nil }
        emptySince = emptySince.filter { layout.hosts[$0.key] != nil }
        reportedIdle = reportedIdle.filter { layout.hosts[$0] != nil }
        lastMoved = lastMoved.filter { now - $0.value < settings.cooldown || inFlight[$0.key] != nil }
    }

    private mutating func updateHostStates(_ layout: Layout, now: MonotonicTime) {
        for id in layout.hostIDs {
            let f = layout.fractions(id)
            let above = f.cpu > settings.cpu.high || f.memory > settings.memory.high
            let notYetRelieved = f.cpu >= settings.cpu.high - settings.hysteresis
                || f.memory >= settings.memory.high - settings.hysteresis
            let wasOverloaded = overloadedSince[id] != nil
            if above || (wasOverloaded && notYetRelieved) {
                if !wasOverloaded { overloadedSince[id] = now }
            } else {
                overloadedSince[id] = nil
            }
            if f.cpu < settings.cpu.low && f.memory < settings.memory.low && !layout.isEmpty(id) {
                if underloadedSince[id] == nil { underloadedSince[id] = now }
            } else {
                underloadedSince[id] = nil
            }
            let asleep = layout.hosts[id]?.asleep ?? false
            if layout.isEmpty(id) && !asleep {
                if emptySince[id] == nil { emptySince[id] = now }
            } else {
                emptySince[id] = nil
                reportedIdle.remove(id)
            }
        }
    }

    // MARK: - Queries for the round

    func overloadDwellPassed(_ host: NodeID, now: MonotonicTime) -> Bool {
        overloadedSince[host].map { now - $0 >= settings.dwell } ?? false
    }

    func underloadDwellPassed(_ host: NodeID, now: MonotonicTime) -> Bool {
        underloadedSince[host].map { now - $0 >= settings.dwell } ?? false
    }

    func emptyDwellPassed(_ host: NodeID, now: MonotonicTime) -> Bool {
        emptySince[host].map { now - $0 >= settings.dwell } ?? false
    }

    func coolingDown(_ vm: String, now: MonotonicTime) -> Bool {
        lastMoved[vm].map { now - $0 < settings.cooldown } ?? false
    }

    /// A host some unfinished or unobserved move leaves from or goes to: its picture is not settled.
    func hasMovesInProgress(_ host: NodeID) -> Bool {
        inFlight.values.contains { $0.from == host || $0.to == host } || landed.values.contains { $0.from == host || $0.to == host }
    }

    func isMoving(_ vm: String) -> Bool { inFlight[vm] != nil || landed[vm] != nil }
}
