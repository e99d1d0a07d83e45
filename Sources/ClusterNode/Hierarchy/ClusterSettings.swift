import ClusterAPI
import ClusterCore
import Foundation
import Logging

/// What every node of one cluster shares: the secret, the bootstraps, and the timing of heartbeats.
public struct ClusterSettings: Sendable {
    /// Heartbeats carry an HMAC over this secret; datagrams without a valid one are dropped.
    public var secret: String
    /// Bootstrap endpoints (HTTP and UDP on the same host:port).
    public var bootstraps: [Endpoint] = []
    public var heartbeatInterval: Duration = .milliseconds(250)
    /// This node's metrics (`/metrics`); the runtime makes one per node when none is given.
    public var metrics: NodeMetrics?
    /// A local controller silent this long is dropped by its manager (issue: noticed within 2 s).
    public var controllerTimeout: Duration = .milliseconds(1200)
    /// A manager silent this long is left by its controllers (issue: re-joined within 3 s).
    public var managerTimeout: Duration = .milliseconds(1200)
    /// The leader drops a manager silent this long.
    public var leaderManagerTimeout: Duration = .milliseconds(1500)
    /// How many events the leader keeps (`GET /v1/events`); older ones are compacted away.
    public var eventsKept = 1000
    /// A leader silent this long is forgotten.
    public var leaderTimeout: Duration = .milliseconds(2000)
    public var assignment: GroupLeaderState.AssignmentPolicy = .roundRobin
    /// A multicast `GROUP:PORT` (e.g. Snooze's 225.4.5.6:9000): the leader also announces itself there and every
    /// node listens, so nodes find the leader without a bootstrap. Unicast is always used as well.
    public var multicast: Endpoint?
    public var submission = SubmissionSettings()
    /// The leader's rebalancer and the managers' usage windows.
    public var rebalancing = RebalancingSettings()
    /// Putting idle hosts to sleep and waking them for room (off unless both agents are given).
    public var energy = EnergySettings()
    /// VM high availability: how the leader fences a dead host before restarting its HA VMs elsewhere.
    public var highAvailability = HighAvailabilitySettings()
    /// Read and idle timeouts and the connection cap of this node's HTTP server.
    public var httpLimits = HTTPServerLimits()
    /// Who may call the HTTP APIs (tokens, tenants, Snooze compatibility).
    public var auth = ClusterAuthSettings()
    /// TLS on every node's HTTP API (nil: plain HTTP).
    public var tls: HTTPTLSSettings?

    public init(secret: String) {
        self.secret = secret
    }
}

/// Where the etcd cluster is and how long a leader's lease lasts.
public struct EtcdSettings: Sendable {
    /// One client URL per member (`http://10.77.1.21:2379`).
    public var endpoints: [String]
    /// Every key of this cluster lives under it (`/doze/NAME`).
    public var prefix: String
    /// The leader's lease: it stops leading once it cannot renew it for this long, and a dead leader is
    /// replaced after about this long.
    public var leaseTTLSeconds: Int = 3
    /// TLS to the members (https:// endpoints): a CA to trust, and a client certificate and key when the members
    /// ask for one. Nil: plain HTTP, or the system's trust store.
    public var tls: EtcdTLS?
    public init(endpoints: [String], prefix: String) {
        self.endpoints = endpoints
        self.prefix = prefix
    }

    /// One client for the whole process (AsyncHTTPClient's must be shut down, never dropped).
    public func client() throws -> EtcdClient {
        guard let tls else { return EtcdClient(endpoints: endpoints) }
        return EtcdClient(endpoints: endpoints, http: try EtcdClient.tlsHTTP(tls))
    }
}

/// How submitted VMs are placed, addressed and remembered.
public struct SubmissionSettings: Sendable {
    /// The subnet VM addresses come from (Snooze's `network.virtualMachineSubnet`); nil: VMs get no address.
    public var subnet: String?
    /// The public range floating IPs come from (`FIRST-LAST`, seed 004); nil: none can be allocated.
    public var floatingRange: String?
    /// How the leader spreads VMs over group managers: round-robin or first-fit.
    public var dispatch: PlacementPolicy = .roundRobin
    /// How a group manager places VMs on its local controllers.
    public var placement: PlacementPolicy = .leastLoaded
    /// How long a finished submission's result stays readable.
    public var resultTTL: Duration = .seconds(3600)
    /// The most VMs one submission may hold.
    public var maxVMs = 10_000
    /// Running migrations one host may take part in (as source or destination); more are refused (drains queue).
    public var migrationsPerHost = 2
    public init() {}
}

/// Where a node keeps its identity between restarts: `STATE/node.json`.
struct NodeIdentity: Codable {
    var id: NodeID
    var previousManager: NodeID?

    static func load(stateDirectory: String) throws -> NodeIdentity {
        try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
        try StateDirectoryLock.acquire(stateDirectory)
        let file = JSONFile<NodeIdentity>(path: stateDirectory + "/node.json")
        if let identity = try file.load() { return identity }
        let fresh = NodeIdentity(id: UUID().uuidString.lowercased())
        try file.save(fresh)
        return fresh
    }

    func save(stateDirectory: String) {
        try? JSONFile<NodeIdentity>(path: stateDirectory + "/node.json").save(self)
    }

    /// This start's heartbeat incarnation, above every earlier start's whatever the clock says now; recorded in
    /// `incarnation.json` before the first heartbeat goes out. Call after `load` (which holds the directory's lock).
    static func nextIncarnation(stateDirectory: String, now: Date = Date()) throws -> UInt64 {
        let file = JSONFile<[String: UInt64]>(path: stateDirectory + "/incarnation.json")
        let wall = UInt64(max(0, now.timeIntervalSince1970) * 1e9)
        let next = ReplayGuard.nextIncarnation(previous: try? file.load()?["incarnation"], wallClockNanoseconds: wall)
        try file.save(["incarnation": next])
        return next
    }
}

/// `--auth`, `--snooze-compat`, `--admin-token-file`. nil modes take the defaults for the node's address: open on
/// loopback, tokens (and Snooze tokens in the query) anywhere else.
public struct ClusterAuthSettings: Sendable {
    public var mode: AuthMode?
    public var snoozeCompat: SnoozeCompat?
    /// The admin token: read, or made at first start (0600). Every node given the same file takes the same token.
    public var adminTokenFile: String?
    public init(mode: AuthMode? = nil, snoozeCompat: SnoozeCompat? = nil, adminTokenFile: String? = nil) {
        self.mode = mode
        self.snoozeCompat = snoozeCompat
        self.adminTokenFile = adminTokenFile
    }
}
