/// One hypervisor host: what a local controller needs from it. Every method returns `Sendable` values;
/// implementations keep their handles to themselves.
/// Opens a connection to the hypervisor at a URI. A local controller is given one (libvirt's, in `doze`) and
/// never names the concrete type: it opens its own connection and one more per live migration through it.
public typealias HypervisorFactory = @Sendable (_ uri: String) async throws(HypervisorError) -> any Hypervisor

public protocol Hypervisor: Sendable {
    /// The URI this connection was opened with.
    var uri: String { get }
    /// Closes the connection; nothing may be called on it afterwards.
    func close() async

    func nodeInfo() async throws(HypervisorError) -> NodeInfo
    func hostname() async throws(HypervisorError) -> String

    // MARK: Domains
    func listDomains() async throws(HypervisorError) -> [DomainInfo]
    func domain(_ ref: DomainRef) async throws(HypervisorError) -> DomainInfo
    /// Defines a persistent domain from XML and returns it (not started).
    func define(xml: String) async throws(HypervisorError) -> DomainInfo
    /// Starts a defined domain.
    func start(_ ref: DomainRef) async throws(HypervisorError) -> DomainInfo
    /// Defines a domain, sets one metadata element, starts it, and returns it with its XML: one trip to the
    /// hypervisor for the whole creation. A domain that fails to start is undefined again.
    func defineAndStart(xml: String, metadata: DomainMetadata?) async throws(HypervisorError) -> (info: DomainInfo, xml: String)
    /// Creates and starts a transient domain.
    func createTransient(xml: String) async throws(HypervisorError) -> DomainInfo
    func xml(_ ref: DomainRef, secure: Bool) async throws(HypervisorError) -> String
    /// The definition to hand another host (`VIR_DOMAIN_XML_MIGRATABLE`, secure): a migration's destination XML.
    func migratableXML(_ ref: DomainRef) async throws(HypervisorError) -> String
    func suspend(_ ref: DomainRef) async throws(HypervisorError)
    func resume(_ ref: DomainRef) async throws(HypervisorError)
    func shutdown(_ ref: DomainRef) async throws(HypervisorError)
    func reboot(_ ref: DomainRef) async throws(HypervisorError)
    func destroy(_ ref: DomainRef) async throws(HypervisorError)
    /// Removes the definition, its snapshot metadata and any managed-save image.
    func undefine(_ ref: DomainRef) async throws(HypervisorError)
    func setVCPUs(_ ref: DomainRef, count: Int) async throws(HypervisorError)
    func setMemory(_ ref: DomainRef, kib: UInt64) async throws(HypervisorError)
    func stats(_ ref: DomainRef) async throws(HypervisorError) -> DomainStats
    func setMetadata(_ ref: DomainRef, xml: String?, key: String, namespace: String) async throws(HypervisorError)
    func metadata(_ ref: DomainRef, namespace: String) async throws(HypervisorError) -> String?

    // MARK: Save and restore
    func save(_ ref: DomainRef, to path: String) async throws(HypervisorError)
    func restore(from path: String) async throws(HypervisorError) -> DomainInfo

    // MARK: Migration
    /// Runs a live peer-to-peer migration to another daemon and returns when it is over (seconds to minutes):
    /// callers keep it off shared threads, e.g. on a connection of its own. The source definition is removed and
    /// the domain is persistent on the destination.
    func migrateLive(_ ref: DomainRef, _ parameters: LiveMigrationParameters) async throws(HypervisorError)
    /// The domain's current job (`completed`: the last finished one); nil when there is none.
    func jobStats(_ ref: DomainRef, completed: Bool) async throws(HypervisorError) -> JobStats?
    /// Aborts the domain's current job (a migration: the guest keeps running on the source).
    func abortJob(_ ref: DomainRef) async throws(HypervisorError)
    /// Switches a running migration started with `postCopy` to post-copy.
    func startPostCopy(_ ref: DomainRef) async throws(HypervisorError)

    // MARK: Snapshots
    func createSnapshot(_ ref: DomainRef, xml: String) async throws(HypervisorError) -> SnapshotInfo
    func listSnapshots(_ ref: DomainRef) async throws(HypervisorError) -> [SnapshotInfo]
    func revertToSnapshot(_ ref: DomainRef, snapshot: String) async throws(HypervisorError)
    func deleteSnapshot(_ ref: DomainRef, snapshot: String) async throws(HypervisorError)

    // MARK: Storage
    func listStoragePools() async throws(HypervisorError) -> [StoragePoolInfo]
    /// Defines, builds and starts a `dir` pool at `path` (with the given UUID when one is passed).
    func createDirectoryPool(name: String, uuid: String?, path: String) async throws(HypervisorError) -> StoragePoolInfo
    func storagePool(name: String) async throws(HypervisorError) -> StoragePoolInfo
    /// Stops and undefines the pool; files stay.
    func deleteStoragePool(name: String) async throws(HypervisorError)
    func listVolumes(pool: String) async throws(HypervisorError) -> [StorageVolumeInfo]
    func createVolume(pool: String, name: String, capacityBytes: UInt64, format: String) async throws(HypervisorError) -> StorageVolumeInfo
    func deleteVolume(pool: String, name: String) async throws(HypervisorError)
    /// Creates a volume from a full `<volume>` document (e.g. a qcow2 overlay with a `<backingStore>`).
    func createVolume(pool: String, xml: String) async throws(HypervisorError) -> StorageVolumeInfo

    // MARK: Events
    /// Lifecycle events of this host's domains, in order. The stream ends when the connection closes.
    func events() async throws(HypervisorError) -> AsyncStream<DomainEvent>
}

/// A metadata element to set on a domain (`<key:… xmlns:key=namespace>`).
public struct DomainMetadata: Sendable, Equatable {
    public var xml: String
    public var key: String
    public var namespace: String
    public init(xml: String, key: String, namespace: String) {
        self.xml = xml
        self.key = key
        self.namespace = namespace
    }
}
