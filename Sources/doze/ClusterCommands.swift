import ArgumentParser
import ClusterAPI
import ClusterCore
import ClusterNode
import Foundation
import Logging

/// Options every member of a cluster shares (map to `ClusterSettings` here and nowhere else).
struct ClusterOptions: ParsableArguments {
    @Option(name: .customLong("bootstrap"), help: "A bootstrap's HOST:PORT (repeatable). With none, `doze lc` runs standalone.")
    var bootstraps: [String] = []

    @Option(help: "Cluster secret that authenticates heartbeats (or DOZE_SECRET).")
    var secret: String?

    @Option(help: "File holding the cluster secret.")
    var secretFile: String?

    @Option(help: "Milliseconds between heartbeats.")
    var heartbeatIntervalMs: Int = 250

    @Option(help: "Milliseconds of silence after which a local controller is dropped by its manager.")
    var controllerTimeoutMs: Int = 1200

    @Option(help: "Milliseconds of silence after which a local controller leaves its group manager.")
    var managerTimeoutMs: Int = 1200

    @Option(help: "Milliseconds of silence after which the leader drops a group manager.")
    var leaderManagerTimeoutMs: Int = 1500

    @Option(help: "Milliseconds of silence after which a leader is forgotten.")
    var leaderTimeoutMs: Int = 2000

    @Option(help: "Seconds a client has to send a whole request (head and body) once it starts; slower ones get a 408 and are closed.")
    var readTimeout: Double = 10

    @Option(help: "Seconds a kept-alive connection may sit without a request before it is closed.")
    var idleTimeout: Double = 30

    @Option(help: "Most HTTP connections open at once; beyond it a new one gets a 503 and is closed (also kept under the open-file limit).")
    var maxConnections: Int = 4096

    /// The guards of this node's HTTP server (every role has one).
    func httpLimits() throws -> HTTPServerLimits {
        guard readTimeout > 0, readTimeout <= 3600 else { throw ValidationError("--read-timeout must be from 0 to 3600 seconds") }
        guard idleTimeout > 0, idleTimeout <= 86400 else { throw ValidationError("--idle-timeout must be from 0 to 86400 seconds") }
        guard maxConnections >= 16 else { throw ValidationError("--max-connections must be at least 16") }
        return HTTPServerLimits(readTimeout: .milliseconds(Int64(readTimeout * 1000)),
                                idleTimeout: .milliseconds(Int64(idleTimeout * 1000)), maxConnections: maxConnections)
    }

    @Option(help: "API tokens: 'tokens' requires one on every /v1 call, 'open' lets a call without one act as the admin (default: open on a loopback address, tokens on any other).")
    var auth: String?

    @Option(help: "Snooze clients (/bootstrap, /groupmanager) send no token: 'open' lets them in as the admin, 'token-in-query' wants ?token=… (or a bearer header), 'off' refuses them (default: open on loopback, token-in-query elsewhere).")
    var snoozeCompat: String?

    @Option(help: "The cluster's admin token: read from this file, or made there (mode 0600) at first start. Give every node the same file.")
    var adminTokenFile: String?

    @Option(help: "PEM certificate (chain) of this node's HTTP API: with --tls-key and --tls-ca, every node speaks HTTPS.")
    var tlsCert: String?

    @Option(help: "PEM private key of --tls-cert.")
    var tlsKey: String?

    @Option(help: "PEM CA the other nodes' certificates are checked against (calls to them go over HTTPS).")
    var tlsCa: String?

    @Option(help: "Also announce and listen on this multicast GROUP:PORT (e.g. 225.4.5.6:9000), for networks that carry multicast.")
    var multicast: String?

    func secretValue() throws -> String? {
        if let secret { return secret }
        if let secretFile {
            guard let text = try? String(contentsOfFile: secretFile, encoding: .utf8) else {
                throw ValidationError("cannot read --secret-file \(secretFile)")
            }
            return text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return ProcessInfo.processInfo.environment["DOZE_SECRET"]
    }

    /// nil when no bootstrap is given and the role may run alone.
    func settings(required: Bool) throws -> ClusterSettings? {
        if bootstraps.isEmpty && !required { return nil }
        guard let secret = try secretValue(), !secret.isEmpty else {
            throw ValidationError("a cluster needs a secret: --secret, --secret-file or DOZE_SECRET")
        }
        var settings = ClusterSettings(secret: secret)
        settings.httpLimits = try httpLimits()
        if let auth {
            guard let mode = AuthMode(rawValue: auth) else { throw ValidationError("--auth must be open or tokens, got '\(auth)'") }
            settings.auth.mode = mode
        }
        if let snoozeCompat {
            guard let compat = SnoozeCompat(rawValue: snoozeCompat) else {
                throw ValidationError("--snooze-compat must be open, token-in-query or off, got '\(snoozeCompat)'")
            }
            settings.auth.snoozeCompat = compat
        }
        settings.auth.adminTokenFile = adminTokenFile.map { ($0 as NSString).standardizingPath }
        switch (tlsCert, tlsKey, tlsCa) {
        case (nil, nil, nil): break
        case let (cert?, key?, ca?):
            for file in [cert, key, ca] where !FileManager.default.isReadableFile(atPath: file) {
                throw ValidationError("cannot read TLS file \(file)")
            }
            settings.tls = HTTPTLSSettings(certificateFile: cert, keyFile: key, caFile: ca)
        default: throw ValidationError("TLS needs all of --tls-cert, --tls-key and --tls-ca")
        }
        settings.bootstraps = try bootstraps.map { text in
            guard let endpoint = Endpoint(text) else { throw ValidationError("--bootstrap must be HOST:PORT, got '\(text)'") }
            return endpoint
        }
        for (name, value) in [("heartbeat-interval-ms", heartbeatIntervalMs), ("controller-timeout-ms", controllerTimeoutMs),
                              ("manager-timeout-ms", managerTimeoutMs), ("leader-timeout-ms", leaderTimeoutMs),
                              ("leader-manager-timeout-ms", leaderManagerTimeoutMs)] where value <= 0 {
            throw ValidationError("--\(name) must be > 0")
        }
        settings.heartbeatInterval = .milliseconds(heartbeatIntervalMs)
        settings.controllerTimeout = .milliseconds(controllerTimeoutMs)
        settings.managerTimeout = .milliseconds(managerTimeoutMs)
        settings.leaderManagerTimeout = .milliseconds(leaderManagerTimeoutMs)
        settings.leaderTimeout = .milliseconds(leaderTimeoutMs)
        if let multicast {
            guard let group = Endpoint(multicast), let first = group.host.split(separator: ".").first.flatMap({ Int($0) }),
                  (224...239).contains(first) else {
                throw ValidationError("--multicast must be a multicast GROUP:PORT (224.0.0.0-239.255.255.255), got '\(multicast)'")
            }
            settings.multicast = group
        }
        return settings
    }
}

/// How the leader (and managers) place, address and remember submitted VMs.
struct SubmissionOptions: ParsableArguments {
    @Option(help: "Subnet VM addresses come from (e.g. 10.80.0.0/16); none: VMs get no address.")
    var vmSubnet: String?

    @Option(help: "The public range floating IPs are allocated from (seed 004), FIRST-LAST, e.g. 10.77.0.200-10.77.0.250.")
    var floatingRange: String?

    @Option(help: "How the leader spreads VMs over group managers: round-robin or first-fit.")
    var dispatch = "round-robin"

    @Option(help: "How a group manager places VMs on its local controllers: least-loaded, first-fit or round-robin.")
    var placement = "least-loaded"

    @Option(help: "Seconds a finished submission's result stays readable.")
    var resultTtl = 3600

    @Option(help: "Running live migrations one host may take part in at a time (as source or destination).")
    var migrationsPerHost = 2

    func settings() throws -> SubmissionSettings {
        var settings = SubmissionSettings()
        if let vmSubnet {
            do { _ = try IPPool(subnet: vmSubnet) } catch {
                throw ValidationError("--vm-subnet must be an IPv4 CIDR with a prefix from /8 to /30, got '\(vmSubnet)'")
            }
            settings.subnet = vmSubnet
        }
        if let floatingRange {
            do { _ = try NetworkBook.parseRange(floatingRange) } catch { throw ValidationError("--floating-range: \(error.message)") }
            settings.floatingRange = floatingRange
        }
        guard let dispatchPolicy = PlacementPolicy(rawValue: dispatch), dispatchPolicy != .leastLoaded else {
            throw ValidationError("--dispatch must be round-robin or first-fit, got '\(dispatch)'")
        }
        guard let placementPolicy = PlacementPolicy(rawValue: placement) else {
            throw ValidationError("--placement must be least-loaded, first-fit or round-robin, got '\(placement)'")
        }
        guard resultTtl > 0 else { throw ValidationError("--result-ttl must be > 0 seconds") }
        settings.dispatch = dispatchPolicy
        settings.placement = placementPolicy
        settings.resultTTL = .seconds(resultTtl)
        guard (1...64).contains(migrationsPerHost) else { throw ValidationError("--migrations-per-host must be from 1 to 64") }
        settings.migrationsPerHost = migrationsPerHost
        return settings
    }
}

func absolutePath(_ path: String) -> String {
    path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
}

/// Writes `STATE/listen.addr` and prints the address, for scripts that started the node with port 0.
func announceListening(role: String, endpoint: Endpoint, stateDirectory: String) {
    print("doze \(role) listening on http://\(endpoint)")
    fflush(nil)
    try? "\(endpoint)\n".write(toFile: stateDirectory + "/listen.addr", atomically: true, encoding: .utf8)
}

struct GroupManagerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gm", abstract: "Run a group manager: campaigns for group leader, else manages local controllers.")

    @Option(help: "HTTP and heartbeat address (TCP and UDP, same port).")
    var listen = "127.0.0.1:5001"

    @Option(help: "Directory for this node's identity.")
    var stateDir: String

    @Option(help: "Shared directory of the one-host election backend (the same for every group manager); not with --etcd.")
    var electionDir: String?

    @Option(help: "etcd client URLs, comma-separated (http://10.77.1.21:2379,…): elect the leader and keep the cluster records on etcd.")
    var etcd: String?

    @Option(help: "Key prefix of this cluster on etcd.")
    var etcdPrefix = "/doze/default"

    @Option(help: "Seconds of the leader's etcd lease: a dead leader is replaced after about this long (at least 2).")
    var leaseTtl = 3

    @Option(help: "PEM CA certificate the etcd members' certificates are checked against (https:// endpoints).")
    var etcdCaFile: String?

    @Option(help: "PEM client certificate for etcd members that require one (with --etcd-key-file).")
    var etcdCertFile: String?

    @Option(help: "PEM private key of --etcd-cert-file.")
    var etcdKeyFile: String?

    @Option(help: "How the leader places joining local controllers: round-robin or least-loaded.")
    var assignment = "round-robin"

    @Option(help: "Fencing of dead hosts: 'none' never fences, so HA VMs of a dead host are never restarted elsewhere (the default without --fence-command).")
    var fence: String?

    @Option(help: ArgumentHelp("Program that fences a dead host: run with the host's id (env DOZE_FENCE_HOST_ID, DOZE_FENCE_HOST_ADDRESS, DOZE_FENCE_HOST_PORT); exit 0 means the host is off. Its HA VMs restart elsewhere only then.", valueName: "path"))
    var fenceCommand: String?

    @Option(help: "Seconds a fence command may run before it is killed and counts as failed.")
    var fenceTimeout: Double = 30

    @Option(help: "Events the leader keeps (GET /v1/events, doze events); older ones are compacted away.")
    var eventsKept = 1000

    @OptionGroup var submission: SubmissionOptions
    @OptionGroup var rebalancing: RebalanceOptions
    @OptionGroup var energy: EnergyOptions
    @OptionGroup var clusterOptions: ClusterOptions
    @OptionGroup var common: CommonOptions

    /// `--fence` / `--fence-command`, checked: a command that is not an executable file stops the manager here.
    func fenceAgent() throws -> FenceAgent {
        if let fence, fence != "none" {
            throw ValidationError("--fence takes only 'none'; give a fence program with --fence-command PATH")
        }
        guard let fenceCommand else { return .none }
        guard fence == nil else { throw ValidationError("--fence none and --fence-command contradict each other: give one") }
        do { return try FenceAgent.command(absolutePath(fenceCommand)).validated() } catch { throw ValidationError(error.message) }
    }

    func validate() throws {
        _ = try parseListen(listen)
        _ = try fenceAgent()
        guard fenceTimeout > 0, fenceTimeout <= 3600 else { throw ValidationError("--fence-timeout must be more than 0 and at most 3600 seconds, got \(fenceTimeout)") }
        guard GroupLeaderState.AssignmentPolicy(rawValue: assignment) != nil else {
            throw ValidationError("--assignment must be round-robin or least-loaded")
        }
        guard (electionDir == nil) != (etcd == nil) else {
            throw ValidationError("give either --election-dir (one host) or --etcd (several hosts)")
        }
        if let etcd {
            for url in etcd.split(separator: ",") where !(url.hasPrefix("http://") || url.hasPrefix("https://")) || URL(string: String(url)) == nil {
                throw ValidationError("--etcd takes client URLs like http://10.77.1.21:2379, got '\(url)'")
            }
        }
        guard (1...1_000_000).contains(eventsKept) else { throw ValidationError("--events-kept must be from 1 to 1000000, got \(eventsKept)") }
        guard (2...3600).contains(leaseTtl) else { throw ValidationError("--lease-ttl must be from 2 to 3600 seconds") }
        guard etcdPrefix.hasPrefix("/"), !etcdPrefix.hasSuffix("/") else {
            throw ValidationError("--etcd-prefix must start with / and not end with one, got '\(etcdPrefix)'")
        }
    }

    func run() async throws {
        let log = common.bootstrapLogging()
        let (host, port) = try parseListen(listen)
        guard var cluster = try clusterOptions.settings(required: true) else { return }
        cluster.assignment = GroupLeaderState.AssignmentPolicy(rawValue: assignment)!
        cluster.eventsKept = eventsKept
        let backend: CoordinationBackend
        if let etcd {
            var settings = EtcdSettings(endpoints: etcd.split(separator: ",").map(String.init), prefix: etcdPrefix)
            settings.leaseTTLSeconds = leaseTtl
            if etcdCaFile != nil || etcdCertFile != nil {
                guard (etcdCertFile == nil) == (etcdKeyFile == nil) else {
                    throw ValidationError("--etcd-cert-file and --etcd-key-file go together")
                }
                for file in [etcdCaFile, etcdCertFile, etcdKeyFile].compactMap({ $0 }) where !FileManager.default.isReadableFile(atPath: file) {
                    throw ValidationError("cannot read \(file)")
                }
                settings.tls = EtcdTLS(caFile: etcdCaFile.map(absolutePath), certFile: etcdCertFile.map(absolutePath), keyFile: etcdKeyFile.map(absolutePath))
            }
            backend = try CoordinationBackend.etcd(settings, logger: log)
        } else {
            backend = CoordinationBackend.directory(absolutePath(electionDir!))
        }
        cluster.submission = try submission.settings()
        cluster.rebalancing = try rebalancing.settings()
        cluster.energy = try energy.settings()
        cluster.highAvailability.fence = try fenceAgent()
        cluster.highAvailability.fenceTimeout = .milliseconds(Int64(fenceTimeout * 1000))
        if case .command(let path) = cluster.highAvailability.fence {
            log.info("HA VMs of dead hosts restart elsewhere once this command fences the host", metadata: ["doze/fence": "\(path)"])
        }
        let state = absolutePath(stateDir)
        try await HierarchyRuntime.runGroupManager(
            listen: ListenAddress(host: host, port: port), stateDirectory: state, cluster: cluster,
            backend: backend, logger: log
        ) { endpoint in announceListening(role: "gm", endpoint: endpoint, stateDirectory: state) }
    }
}

struct BootstrapCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bootstrap", abstract: "Run a bootstrap: the stable entry point that follows the group leader.")

    @Option(help: "HTTP and heartbeat address (TCP and UDP, same port).")
    var listen = "127.0.0.1:5000"

    @Option(help: "Directory for this node's identity.")
    var stateDir: String

    @OptionGroup var clusterOptions: ClusterOptions
    @OptionGroup var common: CommonOptions

    func run() async throws {
        let log = common.bootstrapLogging()
        let (host, port) = try parseListen(listen)
        guard let cluster = try clusterOptions.settings(required: true) else { return }
        let state = absolutePath(stateDir)
        try await HierarchyRuntime.runBootstrap(listen: ListenAddress(host: host, port: port), stateDirectory: state,
                                                cluster: cluster, logger: log) { endpoint in
            announceListening(role: "bootstrap", endpoint: endpoint, stateDirectory: state)
        }
    }
}
