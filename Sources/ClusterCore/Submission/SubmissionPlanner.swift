/// The group leader's decisions about a submission, without IO: which address and group manager each VM gets
/// (or why it fails at once), which manager takes VMs another one refused, which takes those of a manager lost
/// with them in hand. It owns what outlives one submission: the IP pool, the placement reservations of VMs
/// dispatched but not yet in a manager's summary, and when addresses of vanished VMs go back to the pool.
///
/// The shell (`SubmissionCoordinator`) records the plan, carries it out, and feeds back what happened
/// (`onAnswered`, `onFailed`, `onSummaries`, `reclaimAddresses`). Time is passed in as `now`.
public struct SubmissionPlanner: Sendable {
    public struct Settings: Sendable {
        /// A leader just elected waits this long for managers to report before trusting its view of the cluster.
        public var settleTime: Duration
        /// A dispatch reservation no summary has confirmed is dropped after this long (the VM's usage shows in
        /// its controller's summary by then, or the VM never started).
        public var reservationTimeout: Duration = .seconds(10)
        /// A VM holding an address and seen nowhere for this long gives its address back.
        public var addressGrace: Duration = .seconds(10)
        public init(settleTime: Duration) { self.settleTime = settleTime }
    }

    /// One VM of a submission, already checked by the shell.
    public struct VMRequest: Sendable, Equatable {
        public var name: String
        public var demand: ResourceVector
        /// Snooze's `hostId`: the group manager or local controller the VM must go to.
        public var pinnedHost: NodeID?
        public init(name: String, demand: ResourceVector, pinnedHost: NodeID? = nil) {
            self.name = name
            self.demand = demand
            self.pinnedHost = pinnedHost
        }
    }

    /// What happens to one VM of a submission.
    public struct VMPlan: Sendable, Equatable {
        public enum Directive: Sendable, Equatable {
            /// Send the VM to this group manager (its placement is reserved there).
            case dispatch(to: ManagerInfo)
            /// The VM fails before any manager sees it; its address (if any) is already back in the pool.
            case fail(VMErrorCode, String)
        }
        public var vm: String
        /// Its address; kept in the answer even when the VM then fails, as before.
        public var ipAddress: String?
        /// The local controller it is pinned to (`hostId` naming a controller): a refusal there is final.
        public var pinnedController: NodeID?
        public var directive: Directive
        public init(vm: String, ipAddress: String? = nil, pinnedController: NodeID? = nil, directive: Directive) {
            self.vm = vm
            self.ipAddress = ipAddress
            self.pinnedController = pinnedController
            self.directive = directive
        }
    }

    public typealias Managers = [NodeID: GroupLeaderState.ManagerRecord]

    public var settings: Settings
    /// Addresses handed out; nil when the cluster has no VM subnet. The shell sets it from the records it reads back.
    public var pool: IPPool?
    public private(set) var placement: Placement
    /// Dispatch reservations by VM id, until the manager's summary lists the VM.
    private var dispatchedAt: [String: MonotonicTime] = [:]
    /// When a manager answered a dispatched VM; summaries a few intervals later reflect it (listed or gone).
    private var answeredAt: [String: MonotonicTime] = [:]
    /// First time a VM holding an address was seen nowhere.
    private var absentSince: [String: MonotonicTime] = [:]

    public init(policy: PlacementPolicy, settings: Settings, pool: IPPool? = nil) {
        self.placement = Placement(policy: policy)
        self.settings = settings
        self.pool = pool
    }

    /// VM ids dispatched whose reservation still stands.
    public var reserved: Set<String> { Set(dispatchedAt.keys) }

    // MARK: - Planning a submission

    /// MUST be invoked once per accepted submission, with the VMs in the order submitted and the leader's current
    /// view of the managers. Each VM gets an address first, then its pin is resolved, then a manager is chosen.
    public mutating func plan(_ vms: [VMRequest], managers: Managers, now: MonotonicTime) -> [VMPlan] {
        // Which manager holds which controller (for `hostId` naming a controller).
        var managerOfController: [NodeID: NodeID] = [:]
        for record in managers.values {
            for controller in record.controllers { managerOfController[controller.id] = record.info.id }
        }
        // Drained hosts take no new VMs: their room is not the manager's to offer.
        let candidates = managers.values.map { PlacementCandidate(id: $0.info.id, free: $0.openSummary.free) }
        return vms.map { vm in
            let planned = planVM(vm, managers: managers, managerOfController: managerOfController, candidates: candidates, now: now)
            if case .fail = planned.directive { pool?.release(vm: vm.name) }
            return planned
        }
    }

    private mutating func planVM(_ vm: VMRequest, managers: Managers, managerOfController: [NodeID: NodeID],
                                 candidates: [PlacementCandidate], now: MonotonicTime) -> VMPlan {
        var ipAddress: String?
        var pinnedController: NodeID?
        func planned(_ directive: VMPlan.Directive) -> VMPlan {
            VMPlan(vm: vm.name, ipAddress: ipAddress, pinnedController: pinnedController, directive: directive)
        }
        func failing(_ code: VMErrorCode, _ message: String) -> VMPlan { planned(.fail(code, message)) }
        if var pool {
            do throws(IPPool.Failure) {
                ipAddress = try pool.allocate(for: vm.name)
                self.pool = pool
            } catch {
                return failing(.notEnoughIPAddresses, "the VM subnet \(pool.subnet) has no free address left")
            }
        }
        var pinnedManager: NodeID?
        if let host = vm.pinnedHost {
            if managers[host] != nil {
                pinnedManager = host
            } else if let owner = managerOfController[host] {
                pinnedManager = owner
                pinnedController = host
            } else {
                return failing(.invalidHostID, "hostId '\(host)' names no group manager or local controller of this cluster")
            }
        }
        guard !managers.isEmpty else { return failing(.notEnoughGroupManagerCapacity, "no group manager has joined the leader") }
        let demand = HostUsage(vcpus: Int(vm.demand.vcpus), memoryMiB: Int((vm.demand.memoryKiB + 1023) / 1024))
        // Unpinned, a manager qualifies only if one of its controllers could hold the VM on its own.
        let among = pinnedManager != nil ? candidates : candidates.filter { candidate in
            managers[candidate.id]?.controllers.contains { controller in
                controller.summary.total.vcpus >= vm.demand.vcpus && controller.summary.total.memoryKiB >= vm.demand.memoryKiB
            } ?? false
        }
        switch placement.place(vm.name, demand: demand, among: among, pinned: pinnedManager) {
        case .success(let manager):
            dispatchedAt[vm.name] = now
            return planned(.dispatch(to: managers[manager]!.info))
        case .failure(.notEnoughCapacity(let demand, let largest)):
            let room = largest.map { "the roomiest group manager has \($0.vcpus) vCPUs and \($0.memoryMiB) MiB free" }
                ?? "no group manager has a local controller that large"
            return failing(.notEnoughGroupManagerCapacity,
                           "not enough capacity for VM '\(vm.name)' (\(demand.vcpus) vCPUs, \(demand.memoryMiB) MiB): \(room)")
        case .failure(.unknownHost(let host)), .failure(.hostUnschedulable(let host)):
            return failing(.invalidHostID, "group manager '\(host)' cannot take VMs")
        }
    }

    /// MUST be invoked when a planned submission could not be recorded (it is refused): its addresses and
    /// reservations go back.
    public mutating func onNotRecorded(_ vms: [String]) {
        for vm in vms {
            pool?.release(vm: vm)
            placement.settle(vm)
        }
    }

    // MARK: - Results

    /// MUST be invoked when a manager answered for a dispatched VM without an error: its reservation lasts until
    /// the summaries have had time to show it.
    public mutating func onAnswered(_ vm: String, now: MonotonicTime) {
        if dispatchedAt[vm] != nil { answeredAt[vm] = now }
    }

    /// MUST be invoked when a VM of a submission failed: its reservation and its address go back.
    public mutating func onFailed(_ vm: String) {
        placement.settle(vm)
        dispatchedAt[vm] = nil
        pool?.release(vm: vm)
    }

    /// MUST be invoked on every heartbeat-paced tick with the VMs the managers' summaries list: a reservation
    /// ends once its VM is listed, once the summaries had time to reflect the manager's answer, or after a bound.
    public mutating func onSummaries(listing listed: Set<String>, now: MonotonicTime) {
        for (vm, at) in dispatchedAt where listed.contains(vm) || now - at > settings.reservationTimeout
            || answeredAt[vm].map({ now - $0 > settings.settleTime }) == true {
            placement.settle(vm)
            dispatchedAt[vm] = nil
            answeredAt[vm] = nil
        }
    }

    /// MUST be invoked on every tick with the VMs known to exist (listed, being started, just started): an
    /// address whose VM has been seen nowhere for `addressGrace` goes back to the pool. Returns whether the pool
    /// changed (the shell saves it). A leader just elected first waits for every manager to report.
    public mutating func reclaimAddresses(inUse: Set<String>, now: MonotonicTime) -> Bool {
        guard now > settings.settleTime * 4, var pool else { return false }
        var changed = false
        for vm in Set(pool.allocated.values) {
            if inUse.contains(vm) {
                absentSince[vm] = nil
            } else if let since = absentSince[vm] {
                if now - since >= settings.addressGrace {
                    pool.release(vm: vm)
                    absentSince[vm] = nil
                    changed = true
                }
            } else {
                absentSince[vm] = now
            }
        }
        if changed { self.pool = pool }
        return changed
    }

    // MARK: - Choosing another manager

    /// The manager with the most room (its open controllers' summaries) that can take all of `demands`, other
    /// than those in `avoiding`: where VMs a manager refused for want of room go next.
    public static func roomiestManager(for demands: [HostUsage], avoiding: Set<NodeID>, in managers: Managers) -> ManagerInfo? {
        let need = demands.reduce(HostUsage(), +)
        let able = managers.values.filter { record in
            let free = record.openSummary.free
            return !avoiding.contains(record.info.id) && free.vcpus >= need.vcpus && free.memoryMiB >= need.memoryMiB
        }
        return able.max { $0.openSummary.freeFraction < $1.openSummary.freeFraction }?.info
    }

    /// Where the VMs of a manager lost with them in hand go: the other manager with the largest free share
    /// (of all its controllers), or nil when no other manager is left.
    public static func replacement(forLost lost: NodeID, in managers: Managers) -> ManagerInfo? {
        managers.filter { $0.key != lost }.values.min { $0.summary.freeFraction > $1.summary.freeFraction }?.info
    }
}
