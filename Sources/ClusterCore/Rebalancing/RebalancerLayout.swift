extension Rebalancer {
    /// Where every VM is (or will be once this round's and earlier rounds' moves land) and what each host then
    /// carries. Every policy asks it whether a move fits and records the moves it keeps, so moves of one round
    /// account for each other. The brute-force packer uses the same fit rule.
    struct Layout: Sendable {
        struct Load: Sendable, Equatable {
            var cpu = 0.0                  // vCPUs in use
            var memoryUsedMiB = 0.0
            var memoryRequestedMiB = 0
            var vcpusRequested = 0
        }

        let settings: Settings
        private(set) var hosts: [NodeID: Host] = [:]
        fileprivate(set) var vms: [String: VM] = [:]
        private(set) var placement: [String: NodeID] = [:]
        private(set) var residents: [NodeID: Set<String>] = [:]
        private(set) var load: [NodeID: Load] = [:]

        /// VMs on hosts the observation does not list are left out: nothing can be said about them.
        /// A VM listed twice counts once, where it is first listed.
        init(settings: Settings, hosts: [Host], vms: [VM]) {
            self.settings = settings
            for host in hosts {
                self.hosts[host.id] = host
                residents[host.id] = []
                load[host.id] = Load()
            }
            for vm in vms where self.hosts[vm.host] != nil && self.vms[vm.id] == nil {   // a repeated id counts once
                self.vms[vm.id] = vm
                add(vm.id, to: vm.host)
            }
        }

        var hostIDs: [NodeID] { hosts.keys.sorted() }

        func vmsOn(_ host: NodeID) -> [VM] { (residents[host] ?? []).sorted().compactMap { vms[$0] } }

        func isEmpty(_ host: NodeID) -> Bool { residents[host]?.isEmpty ?? true }

        /// Share of capacity in use, per resource; a resource the host has none of is full as soon as it is used.
        func fractions(_ host: NodeID) -> (cpu: Double, memory: Double) {
            guard let capacity = hosts[host]?.capacity, let used = load[host] else { return (0, 0) }
            return (Self.fraction(used.cpu, of: capacity.vcpus), Self.fraction(used.memoryUsedMiB, of: capacity.memoryMiB))
        }

        private static func fraction(_ used: Double, of capacity: Int) -> Double {
            capacity > 0 ? used / Double(capacity) : (used > 0 ? .infinity : 0)
        }

        /// The scarcer resource's share: hosts are ordered by it (Snooze's unnormalised L1 let memory decide alone).
        func loadScore(_ host: NodeID) -> Double {
            let f = fractions(host)
            return max(f.cpu, f.memory)
        }

        /// Least loaded first; ties by the other resource, then by id, so plans are deterministic.
        func byLoadAscending(_ ids: [NodeID]) -> [NodeID] {
            ids.sorted { l, r in
                let lf = fractions(l), rf = fractions(r)
                return (loadScore(l), lf.cpu + lf.memory, l) < (loadScore(r), rf.cpu + rf.memory, r)
            }
        }

        /// Why `vm` may not go to `target` now; nil when it fits: the target takes VMs, no app peer is there,
        /// the memory the VM asked for fits the target's capacity, and neither resource ends above `high`.
        func problem(placing vmID: String, on target: NodeID) -> Problem? {
            guard let vm = vms[vmID], let host = hosts[target], let used = load[target] else { return .unknown }
            if host.asleep { return .asleep }
            if host.draining { return .draining }
            if !host.schedulable { return .unschedulable }
            for peer in vmsOn(target) where peer.id != vm.id
                && (vm.mustNotShareHostWith.contains(peer.id) || peer.mustNotShareHostWith.contains(vm.id)) {
                return .sharesHost(with: peer.id)
            }
            if used.memoryRequestedMiB + vm.requestedMemoryMiB > host.capacity.memoryMiB {
                return .requestedMemory(vm.requestedMemoryMiB)
            }
            if used.vcpusRequested + vm.requestedVCPUs > host.capacity.vcpus {
                return .requestedVCPUs(vm.requestedVCPUs)
            }
            let slack = 1e-9   // sums of fractions must not refuse an exact fit
            if Self.fraction(used.cpu + vm.cpuInUse, of: host.capacity.vcpus) > settings.cpu.high + slack {
                return .over(.cpu, settings.cpu.high)
            }
            if Self.fraction(used.memoryUsedMiB + vm.memoryUsedMiB, of: host.capacity.memoryMiB) > settings.memory.high + slack {
                return .over(.memory, settings.memory.high)
            }
            return nil
        }

        mutating func move(_ vmID: String, to target: NodeID) {
            guard let from = placement[vmID], from != target, hosts[target] != nil else { return }
            remove(vmID, from: from)
            add(vmID, to: target)
        }

        func host(of vmID: String) -> NodeID? { placement[vmID] }

        fileprivate mutating func add(_ vmID: String, to host: NodeID) {
            guard let vm = vms[vmID] else { return }
            placement[vmID] = host
            residents[host, default: []].insert(vmID)
            load[host, default: Load()].cpu += vm.cpuInUse
            load[host, default: Load()].memoryUsedMiB += vm.memoryUsedMiB
            load[host, default: Load()].memoryRequestedMiB += vm.requestedMemoryMiB
            load[host, default: Load()].vcpusRequested += vm.requestedVCPUs
        }

        fileprivate mutating func remove(_ vmID: String, from host: NodeID) {
            guard let vm = vms[vmID] else { return }
            placement[vmID] = nil
            residents[host]?.remove(vmID)
            load[host]?.cpu -= vm.cpuInUse
            load[host]?.memoryUsedMiB -= vm.memoryUsedMiB
            load[host]?.memoryRequestedMiB -= vm.requestedMemoryMiB
            load[host]?.vcpusRequested -= vm.requestedVCPUs
        }
    }

    public enum Resource: String, Sendable, Equatable {
        case cpu, memory
    }

    /// Why one VM cannot go to one host; `phrase` completes "no host can take VM x without …".
    enum Problem: Sendable, Equatable {
        case unknown, asleep, draining, unschedulable
        case sharesHost(with: String)
        case requestedMemory(Int)
        case requestedVCPUs(Int)
        case over(Resource, Double)

        var phrase: String {
            switch self {
            case .unknown: return "an unknown host"
            case .asleep: return "waking a sleeping host"
            case .draining: return "using a draining host"
            case .unschedulable: return "using an unschedulable host"
            case .sharesHost(let peer): return "sharing a host with VM \(peer) of its app"
            case .requestedMemory(let mib): return "running out of memory for the \(mib) MiB it requested"
            case .requestedVCPUs(let vcpus): return "going over the host's vCPU quota with the \(vcpus) vCPU(s) it was given"
            case .over(let resource, let high): return "going over \(percent(high)) \(resource.rawValue)"
            }
        }
    }
}

/// 0.8 → "80%"; 0.125 → "12.5%".
func percent(_ fraction: Double) -> String {
    guard fraction.isFinite else { return "∞%" }   // a used resource on a host that has none of it
    let tenths = (fraction * 1000).rounded()
    let whole = Int(tenths / 10)
    let rest = Int(tenths) % 10
    return rest == 0 ? "\(whole)%" : "\(whole).\(rest)%"
}

extension Rebalancer.Layout {
    /// An empty layout over `hosts` that knows `vms` but places none of them (for the brute-force packer).
    init(settings: Rebalancer.Settings, hosts: [Rebalancer.Host], unplaced vms: [Rebalancer.VM]) {
        self.init(settings: settings, hosts: hosts, vms: [])
        for vm in vms { self.vms[vm.id] = vm }
    }

    mutating func place(_ vmID: String, on host: NodeID) { add(vmID, to: host) }

    mutating func unplace(_ vmID: String) {
        guard let host = placement[vmID] else { return }
        remove(vmID, from: host)
    }
}
