import ClusterCore
import ClusterWire

/// Everything the local controller's HTTP API asks of the controller. Methods throw `DozeError`; the routes
/// turn its kind into an HTTP status and its message into the JSON error body.
public protocol LocalControllerBackend: Sendable {
    // Snooze's /localcontroller operations
    /// `partial`: answer each VM's outcome even when all failed (the group manager's call), instead of an error.
    func startVirtualMachines(_ request: VirtualMachineSubmission, partial: Bool) async throws(DozeError) -> VirtualMachineSubmission
    func virtualMachineMetaData(vm: String) async throws(DozeError) -> VirtualMachineMetaData
    func suspend(vm: String) async throws(DozeError)
    func resume(vm: String) async throws(DozeError)
    func shutdown(vm: String) async throws(DozeError)
    func reboot(vm: String) async throws(DozeError)
    /// Starts a shut-off VM again.
    func start(vm: String) async throws(DozeError)
    /// Snooze's destroy: the VM ends and is removed from the host.
    func destroy(vm: String) async throws(DozeError)
    func resize(_ request: ResizeRequest) async throws(DozeError) -> VirtualMachineMetaData
    func virtualMachines() async throws(DozeError) -> [VirtualMachineMetaData]

    // Seed 001: the host
    func usages() async throws(DozeError) -> UsagesDocument
    func quota() async throws(DozeError) -> QuotaDocument
    func updateQuota(_ body: QuotaDocument) async throws(DozeError) -> QuotaDocument
    func network() async throws(DozeError) -> NetworkDocument
    func updateNetwork(_ body: NetworkDocument) async throws(DozeError) -> NetworkDocument
    func imagePool() async throws(DozeError) -> ImagePoolDocument
    func updateImagePool(_ body: ImagePoolDocument) async throws(DozeError) -> ImagePoolDocument
    func pools() async throws(DozeError) -> PoolsDocument
    func createPool(_ body: PoolDocument) async throws(DozeError) -> PoolDocument
    func updatePool(uuid: String, _ body: PoolDocument) async throws(DozeError) -> PoolDocument
    func deletePool(uuid: String) async throws(DozeError) -> PoolDocument
    func metrics(_ period: MetricsPeriod) async throws(DozeError) -> MetricsDocument

    // Seed 003: single-host VM API
    func createVM(xml: String) async throws(DozeError) -> VMCreation
    /// Reads `fileName` inside the configured XML directory and creates the VM it describes.
    func createVM(xmlFile fileName: String) async throws(DozeError) -> VMCreation
    func listVMs() async throws(DozeError) -> VMListDocument
    func vm(_ name: String) async throws(DozeError) -> VMSummary
    /// Removes the VM: stops it if it runs, then deletes its definition.
    func deleteVM(_ name: String) async throws(DozeError) -> VMSummary
    func createSnapshot(vm: String, name: String?, xml: String?) async throws(DozeError) -> SnapshotSummary
    func snapshots(vm: String) async throws(DozeError) -> SnapshotListDocument
    func revertSnapshot(vm: String, snapshot: String) async throws(DozeError) -> VMSummary
    func deleteSnapshot(vm: String, snapshot: String) async throws(DozeError)

    // Migration (internal: leader → source controller → destination controller)
    func startMigration(_ command: LocalMigrationCommand) async throws(DozeError) -> LocalMigrationStatus
    func migrationStatus(id: String, wait: Duration?) async throws(DozeError) -> LocalMigrationStatus
    func abortMigration(id: String) async throws(DozeError) -> LocalMigrationStatus
    func prepareIncomingMigration(_ request: IncomingMigration) async throws(DozeError) -> IncomingMigrationAnswer
    func cancelIncomingMigration(_ request: IncomingMigration) async throws(DozeError)
    func finishIncomingMigration(_ request: IncomingMigration) async throws(DozeError) -> LocalMigrationStatus
    func restoreMigratedVirtualMachine(_ transfer: OfflineMigrationImage) async throws(DozeError) -> LocalMigrationStatus
    func setDraining(_ draining: Bool) async throws(DozeError)

    // Issue 12: measured use (or, on test-driver hosts, declared load)
    /// `.notFound` for an unknown VM; `.unavailable` while it has no sample (not running, or just started).
    func vmUsage(_ name: String) async throws(DozeError) -> VMUsageDocument
    func hostUsage() async throws(DozeError) -> HostUsageDocument
    /// Declares (or, with an empty load, clears) a VM's synthetic load; refused off the test driver.
    func declareLoad(vm: String, _ load: SyntheticLoad) async throws(DozeError) -> SyntheticLoadDocument
}

/// What `POST /vm` made: the VM, and whether it is new (201) or was there with the same definition (200).
public struct VMCreation: Sendable, Equatable {
    public var summary: VMSummary
    public var created: Bool
    public init(summary: VMSummary, created: Bool) {
        self.summary = summary
        self.created = created
    }
}
