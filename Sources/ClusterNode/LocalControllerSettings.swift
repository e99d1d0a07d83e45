import ClusterAPI
import ClusterCore
import Foundation
import Hypervisor
import Logging

/// Everything a local controller is started with. `doze lc` maps its options here in one place.
public struct LocalControllerSettings: Sendable {
    /// Where the HTTP API listens. Port 0 picks a free port (reported through `onListening`).
    public var host: String = "127.0.0.1"
    public var port: Int = 5010
    /// The libvirt URI of the host this controller manages.
    public var hypervisorURI: String
    /// Controller state: configuration, metrics samples, and (on test-driver hosts) the host's domains.
    public var stateDirectory: String
    /// Seed 003's XML directory: `POST /vm?xmlName=FILE` reads FILE from here.
    public var xmlDirectory: String?
    /// Extra directories VM disks, kernels and filesystems may live in (besides the image pool and volume pools).
    public var diskDirectories: [String] = []
    /// Operator-set allow-roots for volume pools and the image pool (`--storage-root`). Empty: anywhere outside
    /// the system trees and the state directory (`StoragePolicy`).
    public var storageRoots: [String] = []
    /// Whether a quota may exceed the host's own CPUs or memory, and by how much (1.5 = 150 %); nil: it may not.
    public var cpuOvercommit: Double?
    public var memoryOvercommit: Double?
    public var maxBodyBytes: Int = 1 << 20
    /// Read and idle timeouts and the connection cap of the HTTP server.
    public var httpLimits = HTTPServerLimits()
    /// How often the controller samples CPU, memory and network for `/hypervisor/metrics`.
    public var sampleInterval: Duration = .seconds(60)
    /// How often the controller reads every running VM's use (`/v1/vms/{name}/usage`), and how it smooths it.
    public var usageInterval: Duration = .seconds(5)
    public var usageEstimator: UsageEstimator = .defaultForSampling
    /// Samples older than this are deleted.
    public var metricsRetentionDays: Int = 70
    public var logger: Logger = Logger(label: "doze.lc")
    /// This node's metrics (`/metrics`); the runtime makes one per node when none is given.
    public var metrics: NodeMetrics?
    /// Which accelerator VMs run under: the domain type follows it (`kvm` or `qemu`).
    public var accelerator: Accelerator = .auto
    /// The libvirt URI other hosts' daemons use to reach this host's daemon for peer-to-peer live migration
    /// (e.g. `qemu+tcp://10.77.0.11/system`); nil when this host takes no migrations.
    public var migrationURI: String?

    public enum Accelerator: String, Sendable, CaseIterable {
        /// KVM when it is usable (see `DomainTypeChoice`), else TCG.
        case auto
        case kvm
        /// QEMU's software emulation: slow, but boots any stock kernel anywhere.
        case tcg
    }

    /// The host's network data plane for seed-004 switches and floating IPs; nil: books only (`dataPlane: none`).
    public var dataPlane: (any HostNetworkPlane)?

    /// Opens the hypervisor connections: the controller's own and one per live migration.
    public var openHypervisor: HypervisorFactory

    public init(hypervisorURI: String, stateDirectory: String, openHypervisor: @escaping HypervisorFactory) {
        self.hypervisorURI = hypervisorURI
        self.stateDirectory = stateDirectory
        self.openHypervisor = openHypervisor
    }
}
