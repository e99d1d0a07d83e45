/// The fewest hosts a small set of VMs fits on, found by trying every placement: the yardstick consolidation
/// is measured against in tests (and later a benchmark). Exponential: meant for at most 8 VMs.
///
/// It uses the rebalancer's own fit rule (under `high` on every resource, requested memory within capacity,
/// app peers apart) over the hosts that may take VMs, and ignores pins and VM states: the bound is what any
/// sequence of moves could reach at best.
public enum OptimalPacking {
    public static let maximumVMs = 8

    /// nil when the VMs fit on no combination of the hosts at all.
    public static func minimumHostCount(hosts: [Rebalancer.Host], vms: [Rebalancer.VM], settings: Rebalancer.Settings) -> Int? {
        precondition(vms.count <= maximumVMs, "OptimalPacking is exponential: \(vms.count) VMs, at most \(maximumVMs)")
        let usable = hosts.filter { !$0.draining && !$0.asleep && $0.schedulable }.sorted { $0.id < $1.id }
        var search = Search(layout: Rebalancer.Layout(settings: settings, hosts: usable, unplaced: vms),
                            hosts: usable,
                            // Big VMs first: dead ends show up early.
                            order: vms.sorted { ($0.memoryUsedMiB, $0.cpuInUse, $1.id) > ($1.memoryUsedMiB, $1.cpuInUse, $0.id) }.map(\.id))
        search.run(next: 0, hostsUsed: 0)
        return search.best
    }

    private struct Search {
        var layout: Rebalancer.Layout
        let hosts: [Rebalancer.Host]
        let order: [String]
        var best: Int?

        mutating func run(next: Int, hostsUsed: Int) {
            if let best, hostsUsed >= best { return }   // cannot beat what we have
            guard next < order.count else { best = hostsUsed; return }
            let vm = order[next]
            var triedEmptyCapacities: Set<[Int]> = []
            for host in hosts {
                let wasEmpty = layout.isEmpty(host.id)
                if wasEmpty {
                    // Empty hosts of the same size are interchangeable: try one of each.
                    guard triedEmptyCapacities.insert([host.capacity.vcpus, host.capacity.memoryMiB]).inserted else { continue }
                }
                guard layout.problem(placing: vm, on: host.id) == nil else { continue }
                layout.place(vm, on: host.id)
                run(next: next + 1, hostsUsed: hostsUsed + (wasEmpty ? 1 : 0))
                layout.unplace(vm)
            }
        }
    }
}
