extension Rebalancer {
    /// One round of planning: the policies take turns on one projected layout and one migration budget.
    struct Round {
        let settings: Settings
        var layout: Layout
        let now: MonotonicTime
        /// The rebalancer as it stood when the round began: timers, cool-downs, moves in progress.
        let state: Rebalancer
        var directives: [Directive] = []
        private(set) var moves: [Move] = []
        private var movedThisRound: Set<String> = []
        /// Hosts that took VMs this round: not emptied in the same round.
        private var received: Set<NodeID> = []
        /// Hosts emptied this round: never targets.
        private var emptied: Set<NodeID> = []
        private var budgetLeft: Int

        init(settings: Settings, layout: Layout, now: MonotonicTime, rebalancer: Rebalancer) {
            self.settings = settings
            self.layout = layout
            self.now = now
            self.state = rebalancer
            self.budgetLeft = settings.migrationBudget
        }

        // MARK: - Overload relocation

        /// Each overloaded host (most loaded first) sheds VMs until every resource is below `high - hysteresis`:
        /// the smallest-memory VM that relieves it alone if there is one (one cheap move), else the smallest
        /// helpful VMs one by one. Each goes to the least loaded host that stays under `high`, preferring hosts
        /// that already run VMs (an idle host is the last resort: it may be on its way to sleep). Small VMs
        /// that bigger ones made unnecessary are not moved.
        mutating func relieveOverloadedHosts() {
            let overloaded = layout.hostIDs.filter { state.overloadDwellPassed($0, now: now) && mayTakeFrom($0) }
                .sorted { (layout.loadScore($0), $1) > (layout.loadScore($1), $0) }
            for host in overloaded where !isRelieved(host) {
                var notes: [String] = []
                var candidates: [VM] = []
                for vm in layout.vmsOn(host).sorted(by: { ($0.memoryUsedMiB, $0.id) < ($1.memoryUsedMiB, $1.id) }) {
                    if let why = whyNotMovable(vm) { notes.append(why) } else { candidates.append(vm) }
                }
                if let single = candidates.first(where: { isRelieved(host, without: $0) && overloadTarget(for: $0, from: host) != nil }),
                   budgetLeft > 0 {
                    commit(single.id, to: overloadTarget(for: single, from: host)!, reason: .overload)
                } else {
                    // Snooze's greedy: smallest helpful VMs one by one, tried on a copy of the layout...
                    let saved = layout
                    var chosen: [(vm: VM, target: NodeID)] = []
                    for vm in candidates where !isRelieved(host) && helps(vm, host) {
                        guard chosen.count < budgetLeft else {
                            notes.append("the budget of \(settings.migrationBudget) migrations per round is spent")
                            break
                        }
                        if let target = overloadTarget(for: vm, from: host) {
                            layout.move(vm.id, to: target)
                            chosen.append((vm, target))
                        } else {
                            notes.append(noHost(for: vm, among: targets(excluding: host)))
                        }
                    }
                    // ...then the small ones the bigger ones made unnecessary are dropped (fewer moves). Dropping
                    // a move only frees room on its target, so the moves kept still fit.
                    if isRelieved(host) {
                        for (vm, target) in chosen {
                            layout.move(vm.id, to: host)
                            if isRelieved(host) { chosen.removeAll { $0.vm.id == vm.id } } else { layout.move(vm.id, to: target) }
                        }
                    }
                    layout = saved
                    for (vm, target) in chosen { commit(vm.id, to: target, reason: .overload) }
                }
                if !isRelieved(host) {
                    let why = notes.isEmpty ? "no VM on it can be moved" : notes.joined(separator: "; ")
                    directives.append(.refused(.host(host), "host \(host) stays overloaded (\(loadText(host))): \(why)"))
                }
            }
        }

        /// Below `high - hysteresis` on every resource, optionally once `vm` is gone.
        private func isRelieved(_ host: NodeID, without vm: VM? = nil) -> Bool {
            guard let capacity = layout.hosts[host]?.capacity, let load = layout.load[host] else { return true }
            let cpu = load.cpu - (vm?.cpuInUse ?? 0), memory = load.memoryUsedMiB - (vm?.memoryUsedMiB ?? 0)
            return share(cpu, capacity.vcpus) < settings.cpu.high - settings.hysteresis
                && share(memory, capacity.memoryMiB) < settings.memory.high - settings.hysteresis
        }

        /// Moving `vm` lowers a resource the host is still too high on.
        private func helps(_ vm: VM, _ host: NodeID) -> Bool {
            let f = layout.fractions(host)
            return (vm.cpuInUse > 0 && f.cpu >= settings.cpu.high - settings.hysteresis)
                || (vm.memoryUsedMiB > 0 && f.memory >= settings.memory.high - settings.hysteresis)
        }

        private func overloadTarget(for vm: VM, from host: NodeID) -> NodeID? {
            let ordered = layout.byLoadAscending(targets(excluding: host))
            let busyFirst = ordered.filter { !layout.isEmpty($0) } + ordered.filter { layout.isEmpty($0) }
            return busyFirst.first { layout.problem(placing: vm.id, on: $0) == nil }
        }

        // MARK: - Underload relocation

        /// Each host under `low` on every resource for the dwell time (least loaded first) is emptied onto hosts
        /// that already run VMs, if they can take all of its VMs staying under `high`; otherwise nothing moves.
        /// Once the moves landed and the host stayed empty, `idleHosts` reports it.
        mutating func emptyUnderloadedHosts() {
            let underloaded = layout.byLoadAscending(layout.hostIDs.filter {
                state.underloadDwellPassed($0, now: now) && mayTakeFrom($0) && !state.hasMovesInProgress($0)
            })
            for host in underloaded where !received.contains(host) && !layout.isEmpty(host) {
                switch planEmptying(host) {
                case .success(let plan):
                    for (vm, target) in plan { commit(vm, to: target, reason: .underload) }
                    emptied.insert(host)
                case .failure(let refusal):
                    directives.append(.refused(.host(host),
                        "host \(host) is underloaded (\(loadText(host, low: true))) but is not emptied: \(refusal.why)"))
                }
            }
        }

        // MARK: - Idle hosts

        /// Awake hosts that held no VM for the dwell time, not yet reported, with no move still on its way.
        func idleHosts() -> [NodeID] {
            layout.hostIDs.filter {
                state.emptyDwellPassed($0, now: now) && !state.reportedIdle.contains($0) && mayTakeFrom($0)
                    && layout.isEmpty($0) && !state.hasMovesInProgress($0)
            }
        }

        // MARK: - Consolidation (Sercon)

        /// Sercon: hosts by load; the least loaded one is emptied onto the others (most loaded first, never onto
        /// an empty host) if all of its VMs fit, else left alone; then the next, while the budget lasts.
        mutating func consolidate() {
            let sources = layout.byLoadAscending(layout.hostIDs.filter {
                mayTakeFrom($0) && !layout.isEmpty($0) && !state.hasMovesInProgress($0)
            })
            for host in sources where budgetLeft > 0 && !received.contains(host) && !emptied.contains(host) {
                guard case .success(let plan) = planEmptying(host) else { continue }
                for (vm, target) in plan { commit(vm, to: target, reason: .consolidation) }
                emptied.insert(host)
            }
        }

        // MARK: - Shared

        struct Refusal: Error {
            var why: String
        }

        /// Where each VM of `host` would go (largest memory first, first fit onto the most loaded hosts that
        /// already run VMs), or why not all of them can go. Changes nothing.
        private func planEmptying(_ host: NodeID) -> Result<[(String, NodeID)], Refusal> {
            let vms = layout.vmsOn(host).sorted { ($0.memoryUsedMiB, $1.id) > ($1.memoryUsedMiB, $0.id) }
            if let stuck = vms.lazy.compactMap({ self.whyNotMovable($0) }).first { return .failure(Refusal(why: stuck)) }
            guard vms.count <= budgetLeft else {
                return .failure(Refusal(why: "it holds \(vms.count) VMs and this round's migration budget has \(budgetLeft) left"))
            }
            var trial = layout
            var plan: [(String, NodeID)] = []
            for vm in vms {
                let candidates = targets(excluding: host).filter { !trial.isEmpty($0) }
                let mostLoadedFirst = trial.byLoadAscending(candidates).reversed()
                guard let target = mostLoadedFirst.first(where: { trial.problem(placing: vm.id, on: $0) == nil }) else {
                    return .failure(Refusal(why: noHost(for: vm, among: candidates, in: trial)))
                }
                trial.move(vm.id, to: target)
                plan.append((vm.id, target))
            }
            return .success(plan)
        }

        /// The rebalancer leaves draining hosts to the drain, and sleeping ones hold nothing to move.
        private func mayTakeFrom(_ host: NodeID) -> Bool {
            guard let h = layout.hosts[host] else { return false }
            return !h.draining && !h.asleep
        }

        /// Hosts that may take VMs this round, other than `source`.
        private func targets(excluding source: NodeID) -> [NodeID] {
            layout.hostIDs.filter { id in
                guard id != source, !emptied.contains(id), let h = layout.hosts[id] else { return false }
                return !h.draining && !h.asleep && h.schedulable
            }
        }

        private func whyNotMovable(_ vm: VM) -> String? {
            switch vm.state {
            case .migrating: return "VM \(vm.id) is migrating"
            case .suspended: return "VM \(vm.id) is suspended"
            case .running: break
            }
            if vm.pinned { return "VM \(vm.id) is pinned to host \(vm.host)" }
            if state.isMoving(vm.id) || movedThisRound.contains(vm.id) { return "VM \(vm.id) is already being moved" }
            if state.coolingDown(vm.id, now: now) { return "VM \(vm.id) moved less than \(settings.cooldown) ago" }
            return nil
        }

        private func noHost(for vm: VM, among candidates: [NodeID], in view: Layout? = nil) -> String {
            let view = view ?? layout
            let problems = candidates.compactMap { id in view.problem(placing: vm.id, on: id).map { (id, $0) } }
            guard !problems.isEmpty else {
                return "no host can take VM \(vm.id): no other host is awake, schedulable, not draining and running VMs"
            }
            let phrases = Set(problems.map(\.1.phrase))
            if phrases.count == 1 { return "no host can take VM \(vm.id) without \(phrases.first!)" }
            return "no host can take VM \(vm.id) (" + problems.map { "\($0.0): \($0.1.phrase)" }.joined(separator: ", ") + ")"
        }

        /// "cpu 91% (high 80%), memory 40% (high 80%)"; `low: true` quotes the low thresholds instead.
        private func loadText(_ host: NodeID, low: Bool = false) -> String {
            let f = layout.fractions(host)
            let cpu = low ? settings.cpu.low : settings.cpu.high, memory = low ? settings.memory.low : settings.memory.high
            let bound = low ? "low" : "high"
            return "cpu \(percent(f.cpu)) (\(bound) \(percent(cpu))), memory \(percent(f.memory)) (\(bound) \(percent(memory)))"
        }

        private func share(_ used: Double, _ capacity: Int) -> Double {
            capacity > 0 ? used / Double(capacity) : (used > 0 ? .infinity : 0)
        }

        private mutating func commit(_ vm: String, to target: NodeID, reason: Reason) {
            guard let from = layout.host(of: vm) else { return }
            layout.move(vm, to: target)
            let move = Move(vm: vm, from: from, to: target, reason: reason)
            moves.append(move)
            directives.append(.migrate(move))
            movedThisRound.insert(vm)
            received.insert(target)
            budgetLeft -= 1
        }
    }
}
