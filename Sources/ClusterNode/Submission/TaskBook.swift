import ClusterCore
import ClusterWire
import Foundation

/// One VM of a submission as the leader records it.
struct TaskVM: Sendable, Codable, Equatable {
    /// The Snooze meta data answered to clients: location, status, error code, IP, XML.
    var meta: VirtualMachineMetaData
    /// The group manager the VM was dispatched to (written before the dispatch, so a new leader asks the same one
    /// again instead of placing the VM a second time).
    var manager: NodeID?
    /// A local controller the VM is pinned to (`hostId` naming a controller).
    var pinnedController: NodeID?
    /// RUNNING or ERROR reached: the entry no longer changes.
    var isFinal: Bool
    /// The template as submitted, kept for VMs marked `ha`: what a restart on another host submits again.
    var haTemplate: VirtualMachineTemplate? = nil

    var id: String { meta.virtualMachineLocation.virtualMachineId }
}

/// One virtual-cluster submission, as persisted in the record store.
struct TaskRecord: Sendable, Codable, Equatable {
    var id: String
    /// Wall-clock milliseconds (records outlive the leader that wrote them; monotonic clocks do not).
    var createdAt: Int64
    var finishedAt: Int64?
    var clusterError: VirtualClusterErrorCode?
    var vms: [TaskVM]
    /// Which submission pipeline created it: a Snooze/native cluster, or a kvm-app (id of the app).
    var app: String?

    var isFinal: Bool { vms.allSatisfy(\.isFinal) }

    var counts: VirtualClusterTaskDocument.Counts {
        var tally = VirtualClusterTaskDocument.Counts()
        tally.total = vms.count
        for vm in vms {
            if !vm.isFinal { tally.pending += 1 } else if vm.meta.status == .error { tally.failed += 1 } else { tally.running += 1 }
        }
        return tally
    }
}

/// The leader's book of submissions: which VMs each task holds, which are final, which names are spoken for,
/// when results expire. Pure: the shell persists records and does the dispatching; time is passed in.
struct TaskBook: Sendable {
    /// How long a final result stays readable.
    var resultTTL: Duration
    private(set) var records: [String: TaskRecord] = [:]
    /// VM id → task id, for VMs not yet final (their names are taken).
    private(set) var pendingVMs: [String: String] = [:]

    init(resultTTL: Duration) { self.resultTTL = resultTTL }

    static func millis(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
    }

    mutating func add(_ record: TaskRecord) {
        records[record.id] = record
        for vm in record.vms where !vm.isFinal { pendingVMs[vm.id] = record.id }
    }

    /// Merges results into a task by VM id (never by position). Statuses other than UNKNOWN are final.
    /// Returns true when this made the task final.
    @discardableResult
    mutating func apply(_ results: [VirtualMachineMetaData], to taskID: String, nowMillis: Int64) -> Bool {
        guard var record = records[taskID], !record.isFinal else { return false }
        var byID: [String: VirtualMachineMetaData] = [:]
        for meta in results { byID[meta.virtualMachineLocation.virtualMachineId] = meta }
        for i in record.vms.indices where !record.vms[i].isFinal {
            guard var result = byID[record.vms[i].id], result.status != .unknown else { continue }
            // The leader's IP and requested capacity stand; the host fills location, status, XML.
            if result.ipAddress.isEmpty { result.ipAddress = record.vms[i].meta.ipAddress }
            if result.requestedCapacity.isEmpty { result.requestedCapacity = record.vms[i].meta.requestedCapacity }
            record.vms[i].meta = result
            record.vms[i].isFinal = true
            pendingVMs[record.vms[i].id] = nil
        }
        let final = record.isFinal
        if final { record.finishedAt = nowMillis }
        records[taskID] = record
        return final
    }

    /// Marks every VM of `taskID` still pending as failed (e.g. no group manager to dispatch to).
    @discardableResult
    mutating func fail(_ vmIDs: [String], in taskID: String, code: VMErrorCode, message: String, nowMillis: Int64) -> Bool {
        guard let record = records[taskID] else { return false }
        let wanted = Set(vmIDs)
        let failed: [VirtualMachineMetaData] = record.vms.filter { wanted.contains($0.id) && !$0.isFinal }.map { vm in
            var meta = vm.meta
            meta.status = .error
            meta.errorCode = code
            meta.errorMessage = message
            return meta
        }
        return apply(failed, to: taskID, nowMillis: nowMillis)
    }

    mutating func setManager(_ manager: NodeID, for vmID: String, in taskID: String, address: NetworkAddress) {
        guard var record = records[taskID], let index = record.vms.firstIndex(where: { $0.id == vmID }) else { return }
        record.vms[index].manager = manager
        record.vms[index].meta.locate(underManager: manager, at: address)
        records[taskID] = record
    }

    /// A migrated VM's new location, in the newest finished task that started it; the ids of changed tasks.
    mutating func relocate(_ vmID: String, to location: VirtualMachineLocation) -> String? {
        let newest = records.values.filter { candidate in candidate.isFinal && candidate.vms.contains { $0.id == vmID && $0.meta.status != .error } }
            .max { $0.createdAt < $1.createdAt }
        guard var record = newest, let index = record.vms.firstIndex(where: { $0.id == vmID }) else { return nil }
        record.vms[index].meta.relocate(to: location)
        record.vms[index].manager = location.groupManagerId
        records[record.id] = record
        return record.id
    }

    mutating func setClusterError(_ code: VirtualClusterErrorCode, in taskID: String) {
        records[taskID]?.clusterError = code
    }

    func document(_ taskID: String) -> VirtualClusterTaskDocument? {
        guard let record = records[taskID] else { return nil }
        return VirtualClusterTaskDocument(
            taskId: record.id, state: record.isFinal ? .done : .pending, counts: record.counts, createdAt: record.createdAt,
            finishedAt: record.finishedAt, expiresAt: record.finishedAt.map { $0 + Self.millis(resultTTL) },
            response: VirtualClusterSubmissionResponse(errorCode: record.clusterError, virtualMachineMetaData: record.vms.map(\.meta)))
    }

    /// Final tasks whose results outlived the TTL; they are dropped from the book.
    mutating func expire(nowMillis: Int64) -> [String] {
        let ttl = Self.millis(resultTTL)
        let gone = records.values.filter { record in record.finishedAt.map { nowMillis - $0 >= ttl } ?? false }.map(\.id)
        for id in gone { records[id] = nil }
        return gone
    }

    /// A VM one task started: a name reused by a later task (after a destroy) is another start.
    struct RecentStart: Sendable {
        var task: String
        var createdAt: Int64
        var vm: TaskVM
        var key: String { task + "/" + vm.id }
    }

    /// VMs that ended RUNNING in the last `window`, by name, the newest start of each name: their names stay
    /// taken until heartbeats report them.
    func recentlyStarted(since cutoffMillis: Int64) -> [String: RecentStart] {
        var out: [String: RecentStart] = [:]
        for record in records.values where (record.finishedAt ?? Int64.max) >= cutoffMillis {
            for vm in record.vms where vm.isFinal && vm.meta.status != .error {
                if let seen = out[vm.id], seen.createdAt > record.createdAt { continue }
                out[vm.id] = RecentStart(task: record.id, createdAt: record.createdAt, vm: vm)
            }
        }
        return out
    }
}
