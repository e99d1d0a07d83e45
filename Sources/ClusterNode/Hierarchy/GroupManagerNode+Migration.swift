import ClusterAPI
import ClusterCore
import ClusterTransport
import ClusterWire
import Foundation
import NIOHTTP1

/// Migrations and host drains: the leader's `MigrationCoordinator` does the work; managers only update their
/// books when told a VM moved.
extension GroupManagerNode {
    func requireMigrations() throws(DozeError) -> MigrationCoordinator {
        _ = try leaderState()
        guard let migrations else { throw DozeError(.unavailable, "the group leader is still starting its migration service") }
        return migrations
    }

    public func migrate(_ request: MigrationSubmission) async throws(DozeError) -> MigrationRecord {
        try await requireMigrations().migrate(request)
    }

    public func migration(id: String, wait: Duration) async throws(DozeError) -> MigrationRecord {
        try await requireMigrations().record(id, wait: wait)
    }

    public func migrationList() async throws(DozeError) -> MigrationList {
        try await requireMigrations().list()
    }

    public func abortMigration(id: String) async throws(DozeError) -> MigrationRecord {
        try await requireMigrations().abort(id)
    }

    public func hostList() async throws(DozeError) -> HostList {
        try await requireMigrations().hostList()
    }

    public func drainHost(_ id: String, options: MigrationOptions?) async throws(DozeError) -> DrainReport {
        try await requireMigrations().drain(id, options: options)
    }

    public func undrainHost(_ id: String) async throws(DozeError) -> DrainReport {
        try await requireMigrations().undrain(id)
    }

    /// Leader: tell the managers of both hosts, then show the move in its own view. In that order, so that a
    /// manager's summary sent before it heard of the move cannot put the VM back in the leader's view.
    func applyMove(_ move: VirtualMachineMove) async {
        guard case .leader(let before) = mode else { return }
        let targets = before.managers.values.filter { $0.controllers.contains { $0.id == move.from || $0.id == move.to } }.map(\.info.control)
        let peers = self.peers
        await withTaskGroup(of: Void.self) { group in
            for target in targets {
                group.addTask { _ = try? await peers.send(.POST, target, "/groupmanager?virtualMachineMoved", body: move, timeout: .seconds(2)) }
            }
        }
        guard case .leader(var state) = mode else { return }
        state.moveVM(move.vm, from: move.from, to: move.to, demand: ResourceVector(vcpus: Double(move.vcpus), memoryKiB: Double(move.memoryMiB) * 1024))
        mode = .leader(state)
    }

    /// Manager: a VM moved between controllers (one or both ours).
    public func virtualMachineMoved(_ move: VirtualMachineMove) async throws(DozeError) {
        guard case .manager(var state) = mode else { return }
        state.moveVM(move.vm, from: move.from, to: move.to, demand: ResourceVector(vcpus: Double(move.vcpus), memoryKiB: Double(move.memoryMiB) * 1024))
        mode = .manager(state)
    }
}
