import ClusterCore
import ClusterWire

// The events stream's emitter: the leader gathers its view (summaries, the managers' VM lists, tasks,
// migrations, HA and energy books) into a `ClusterSnapshot`, and `ClusterObserver` (pure) says what changed.
extension LeaderRole {
    /// One round of the view; skipped while the previous one still runs (a slow manager must not pile them up).
    func observe() {
        guard !observing else { return }
        observing = true
        Task {
            let view = await eventView()
            let changes = observer.onSnapshot(view)
            events.record(changes)
            observing = false
        }
    }

    func eventView() async -> ClusterSnapshot {
        let records = managers()
        var view = ClusterSnapshot()
        var reported = Set<String>()
        for record in records.values {
            for controller in record.controllers {
                view.hosts[controller.id] = .init(present: true, manager: record.info.id, draining: controller.draining == true)
                reported.formUnion(controller.vms)
            }
        }
        view.reported = reported
        if context.cluster.energy.enabled {
            for record in await energy.records() {
                var host = view.hosts[record.id] ?? .init(present: false, manager: record.manager, draining: false)
                host.power = record.power.rawValue
                view.hosts[record.id] = host
            }
        }
        for vm in await virtualMachineDescriptions().virtualMachines {
            let location = vm.virtualMachineLocation
            view.vms[location.virtualMachineId] = .init(status: vm.status, host: location.localControllerId, tenant: vm.tenant)
        }
        view.tasks = await submissions.taskViews()
        for migration in await migrations.list().migrations {
            view.migrations[migration.id] = .init(vm: migration.vm, source: migration.source.localControllerId,
                                                  destination: migration.destination.localControllerId, state: migration.state.rawValue,
                                                  durationMs: migration.durationMs, error: migration.error, reason: migration.reason,
                                                  drain: migration.drain)
        }
        view.restarting = await failover.restartingVMs()
        return view
    }

    /// `GET /v1/events` on the leader.
    func readEvents(since: Int64?, wait: Duration) async throws(DozeError) -> EventLog.Read {
        let read = try await events.read(since: since, wait: wait)
        guard case .page(var page) = read else { return read }
        page.watching = observer.hasBaseline
        return .page(page)
    }
}
