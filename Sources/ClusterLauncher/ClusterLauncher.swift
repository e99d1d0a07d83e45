import ClusterCore
import ClusterTransport
import ClusterWire
import Foundation
import NIOCore
import NIOHTTP1
import UnixSignals

/// `doze cluster up` / `down`: every node of a topology as its own OS process on this machine, with per-node
/// logs and pid files in a run directory.
public struct ClusterLauncher {
    public struct Launched: Sendable {
        public var name: String
        /// A node's role (`bootstrap`, `gm`, `lc`), or `forwarder`.
        public var role: String
        public var listen: String
        public var pid: Int32
        public var log: String
        /// Network-namespace topologies: the namespace the node runs in, and a controller's libvirt URI.
        public var namespace: String?
        public var hypervisor: String?
        /// The argv it runs with inside its namespace (for RUN/layout.json).
        public var command: [String]
    }

    /// What `down` stopped or removed.
    public struct Stopped: Sendable {
        public var nodes = 0
        public var guests = 0
        public var daemons = 0
        public var etcdMembers = 0
        public var namespaces = 0
        public var mountPoints = 0
        public var total: Int { nodes + guests + daemons + etcdMembers + namespaces + mountPoints }
    }

    /// One node to start: `namespace` wraps its command in `ip netns exec`.
    struct PlannedNode {
        var name: String
        var role: NodeRole
        var listen: String
        var namespace: String?
        var hypervisor: String?
        var arguments: [String]
    }

    public let topology: Topology
    public let topologyFile: String
    public let topologyDirectory: String
    public let runDirectory: String
    public let binary: String

    public init(topologyFile: String, runDirectory: String?, binary: String) throws {
        let (topology, dir) = try Topology.load(topologyFile)
        self.topology = topology
        self.topologyDirectory = dir
        self.topologyFile = URL(fileURLWithPath: topologyFile).standardizedFileURL.path
        let cwd = FileManager.default.currentDirectoryPath
        let run = runDirectory ?? topology.runDir ?? ".state/cluster-\(topology.name)"
        self.runDirectory = run.hasPrefix("/") ? run : cwd + "/" + run
        self.binary = binary
    }

    func resolve(_ path: String) -> String { path.hasPrefix("/") ? path : topologyDirectory + "/" + path }

    /// Where the nodes read (or, the first time, make) the admin token: the file the `doze` CLI reads by default.
    public var adminTokenFile: String { topology.adminTokenFile.map(resolve) ?? DozeConfig.defaultTokenFile }

    /// Every node, in start order: bootstraps, managers, controllers.
    func plan() throws -> [PlannedNode] {
        let layout = topology.layout(runDirectory: runDirectory)
        var common = topology.bootstrap.flatMap { ["--bootstrap", $0.listen] }
        // An inline secret reaches the nodes through DOZE_SECRET (see `up`), never argv, which `ps` shows to everyone.
        if let file = topology.secretFile { common += ["--secret-file", resolve(file)] }
        if let heartbeat = topology.heartbeat {
            for (flag, value) in [("--heartbeat-interval-ms", heartbeat.intervalMs), ("--controller-timeout-ms", heartbeat.controllerTimeoutMs),
                                  ("--manager-timeout-ms", heartbeat.managerTimeoutMs), ("--leader-manager-timeout-ms", heartbeat.leaderManagerTimeoutMs),
                                  ("--leader-timeout-ms", heartbeat.leaderTimeoutMs)] {
                if let value { common += [flag, "\(value)"] }
            }
        }
        if let group = topology.multicast { common += ["--multicast", group] }
        if let auth = topology.auth { common += ["--auth", auth] }
        if let compat = topology.snoozeCompat { common += ["--snooze-compat", compat] }
        common += ["--admin-token-file", adminTokenFile]
        if let tls = topology.tls { common += ["--tls-cert", resolve(tls.certFile), "--tls-key", resolve(tls.keyFile), "--tls-ca", resolve(tls.caFile)] }
        var plan: [PlannedNode] = []
        let hub = layout?.hubNamespace
        for (i, node) in topology.bootstrap.enumerated() {
            let name = node.name ?? "bootstrap-\(i + 1)"
            plan.append(PlannedNode(name: name, role: .bootstrap, listen: node.listen, namespace: hub,
                                    arguments: ["bootstrap", "--listen", node.listen, "--state-dir", "\(runDirectory)/\(name)"] + common))
        }
        for (i, node) in topology.managers.enumerated() {
            let name = node.name ?? "gm-\(i + 1)"
            var args = ["gm", "--listen", node.listen, "--state-dir", "\(runDirectory)/\(name)"]
            // One election backend: etcd when the topology has members, else the flock in a shared directory.
            if topology.etcd == nil { args += ["--election-dir", "\(runDirectory)/election"] }
            if let assignment = topology.assignment { args += ["--assignment", assignment] }
            if let vmSubnet = topology.vmSubnet { args += ["--vm-subnet", vmSubnet] }
            if let floatingRange = topology.floatingRange { args += ["--floating-range", floatingRange] }
            if let dispatch = topology.dispatch { args += ["--dispatch", dispatch] }
            if let placement = topology.placement { args += ["--placement", placement] }
            if let resultTTL = topology.resultTTLSeconds { args += ["--result-ttl", "\(resultTTL)"] }
            if let perHost = topology.migrationsPerHost { args += ["--migrations-per-host", "\(perHost)"] }
            args += topology.rebalance?.managerArguments ?? []
            args += topology.energy?.managerArguments(resolve: resolve, layoutFile: layoutFile) ?? []
            if let fence = topology.fenceCommand { args += ["--fence-command", URL(fileURLWithPath: resolve(fence)).standardizedFileURL.path] }
            if let etcd = topology.etcdLayout(runDirectory: runDirectory) {
                args += ["--etcd", etcd.endpoints, "--etcd-prefix", etcd.prefix]
                if let ttl = etcd.leaseTTLSeconds { args += ["--lease-ttl", "\(ttl)"] }
            }
            let own = layout?.managerHosts.first { $0.name == name }?.namespace
            plan.append(PlannedNode(name: name, role: .groupManager, listen: node.listen, namespace: own ?? hub, arguments: args + common))
        }
        for (i, node) in topology.controllers.enumerated() {
            let name = node.name ?? "lc-\(i + 1)"
            let host = layout?.hosts[i]
            let uri = host?.socketURI ?? node.hypervisor ?? "test://" + resolve(node.host!)
            var args = ["lc", "--listen", node.listen, "--hypervisor", uri, "--state-dir", "\(runDirectory)/\(name)"]
            if let migrationURI = host?.migrationURI { args += ["--migration-uri", migrationURI] }
            if let accelerator = node.accelerator { args += ["--accelerator", accelerator] }
            args += topology.rebalance?.controllerArguments ?? []
            for dir in topology.diskDirs ?? [] { args += ["--disk-dir", URL(fileURLWithPath: resolve(dir)).standardizedFileURL.path] }
            plan.append(PlannedNode(name: name, role: .localController, listen: node.listen, namespace: host?.namespace,
                                    hypervisor: uri, arguments: args + common))
        }
        return plan
    }

    var pidDirectory: String { runDirectory + "/pids" }

    /// Pids of nodes from an earlier `up` that still run.
    public func runningPids() -> [(String, Int32)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: pidDirectory)) ?? []
        return names.compactMap { file in
            guard file.hasSuffix(".pid"), let text = try? String(contentsOfFile: "\(pidDirectory)/\(file)", encoding: .utf8),
                  let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), kill(pid, 0) == 0 else { return nil }
            return (String(file.dropLast(4)), pid)
        }.sorted { $0.0 < $1.0 }
    }

    /// Starts every node and waits (bounded) until each answers on `/health`.
    /// A network-namespace topology first gets its namespaces and daemons, and a forwarder after the nodes.
    public func up(readyWithin limit: Duration = .seconds(30)) async throws -> [Launched] {
        if !runningPids().isEmpty || !records().isEmpty || !etcdPids().isEmpty {
            throw LauncherError("a cluster from \(runDirectory) is already running (or was left half-made); run `doze cluster down` first")
        }
        let layout = topology.layout(runDirectory: runDirectory)
        let etcd = topology.etcdLayout(runDirectory: runDirectory)
        let tools = try layout.map { _ in try networkTools() }   // before anything is created
        let etcdBinary = try etcd.map { _ in try tools?.etcd ?? self.etcdBinary() }
        try FileManager.default.createDirectory(atPath: pidDirectory, withIntermediateDirectories: true)
        // The admin token, made here before any node reads it; the launcher's own readiness calls send it.
        let admin: (token: String, secretHash: String)
        do { admin = try AdminTokenFile.loadOrCreate(adminTokenFile) } catch { throw LauncherError("\(error)") }
        NodeCredentials.clientAuthorization = "Bearer \(admin.token)"
        if let tls = topology.tls {
            do { try PeerClient.useTLS(caFile: resolve(tls.caFile)) } catch { throw LauncherError("tls.ca_file \(resolve(tls.caFile)): \(error)") }
        }
        let deadline = ContinuousClock.now + limit
        do {
            // etcd first: the managers campaign on it the moment they start.
            if let layout, let tools { try await networkUp(layout, tools, etcd: etcd) } else if let etcd, let etcdBinary {
                try startEtcd(etcd, binary: etcdBinary, ip: nil)
            }
            if let etcd { try await waitForEtcd(etcd, until: deadline) }
        } catch {
            await down()
            throw error
        }
        var launched: [Launched] = []
        for node in try plan() {
            let (name, listen) = (node.name, node.listen)
            let log = "\(runDirectory)/\(name).log"
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            let process = Process()
            if let ns = node.namespace, let tools {
                process.executableURL = URL(fileURLWithPath: tools.ip)
                process.arguments = ["netns", "exec", ns, binary] + node.arguments
            } else {
                process.executableURL = URL(fileURLWithPath: binary)
                process.arguments = node.arguments
            }
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            process.standardOutput = handle
            process.standardError = handle
            process.standardInput = FileHandle.nullDevice
            if let secret = topology.secret, topology.secretFile == nil {
                process.environment = ProcessInfo.processInfo.environment.merging(["DOZE_SECRET": secret]) { _, new in new }
            }
            do { try process.run() } catch {
                await down()
                throw LauncherError("cannot start \(name): \(error)")
            }
            try "\(process.processIdentifier)\n".write(toFile: "\(pidDirectory)/\(name).pid", atomically: true, encoding: .utf8)
            // `ip netns exec` execs the node: this PID is the node's own.
            launched.append(Launched(name: name, role: node.role.rawValue, listen: listen, pid: process.processIdentifier, log: log,
                                     namespace: node.namespace, hypervisor: node.hypervisor, command: [binary] + node.arguments))
        }
        if let layout, let tools {
            do { launched.append(try startForwarder(layout, tools)) } catch {
                await down()
                throw LauncherError("cannot start the forwarder: \(error)")
            }
        }
        for node in launched {
            while !(await Self.healthy(node)) {
                if kill(node.pid, 0) != 0 || ContinuousClock.now > deadline {
                    let tail = (try? String(contentsOfFile: node.log, encoding: .utf8))?.split(separator: "\n").suffix(5).joined(separator: "\n") ?? ""
                    await down()
                    throw LauncherError("\(node.name) did not come up on \(node.listen); its log ends:\n\(tail)")
                }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        // Another process may own a port and answer /health for a node that failed to bind it: make sure
        // every node we started is still alive once all addresses answer.
        try await Task.sleep(for: .milliseconds(200))
        if let dead = launched.first(where: { kill($0.pid, 0) != 0 }) {
            let tail = (try? String(contentsOfFile: dead.log, encoding: .utf8))?.split(separator: "\n").suffix(5).joined(separator: "\n") ?? ""
            await down()
            throw LauncherError("\(dead.name) exited right after starting (is \(dead.listen) taken by another process?); its log ends:\n\(tail)")
        }
        if let layout, let tools {
            do { try await waitForControllers(layout, until: deadline) } catch {
                await down()
                throw error
            }
            await saveCapabilitiesSeed(layout, cp: tools.cp)
        }
        for member in etcd?.members ?? [] {
            launched.append(Launched(name: member.name, role: "etcd", listen: String(member.clientURL.dropFirst("http://".count)),
                                     pid: Self.readPid(member.pidFile) ?? 0, log: member.log, namespace: member.namespace, hypervisor: nil, command: []))
        }
        do { try writeLayoutFile(launched, etcd: etcd) } catch {
            await down()
            throw LauncherError("cannot write \(layoutFile): \(error)")
        }
        return launched
    }

    static func healthy(_ node: Launched) async -> Bool {
        if let ns = node.namespace { return await NamespaceProbe.healthy(netns: ns, node.listen) }
        return await healthy(node.listen)
    }

    static func healthy(_ listen: String) async -> Bool {
        guard let endpoint = Endpoint(listen),
              let (status, body) = try? await PeerClient(timeout: .seconds(1)).send(.GET, endpoint, "/health") else { return false }
        return status == 200 && String(buffer: body) == "ok"
    }

    /// SIGTERM to every node started from this run directory, then SIGKILL to any left after 5 s; then the etcd
    /// members (after the managers, which resign through them); then, for a network-namespace topology, its guests,
    /// daemons, namespaces and mount points.
    @discardableResult
    public func down() async -> Stopped {
        var stopped = Stopped()
        let running = runningPids()
        for (_, pid) in running { kill(pid, SIGTERM) }
        let deadline = ContinuousClock.now + .seconds(5)
        while running.contains(where: { kill($0.1, 0) == 0 }) && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
        for (_, pid) in running where kill(pid, 0) == 0 { kill(pid, SIGKILL) }
        try? FileManager.default.removeItem(atPath: pidDirectory)
        stopped.nodes = running.count
        try? FileManager.default.removeItem(atPath: layoutFile)
        try? FileManager.default.removeItem(atPath: inlineSecretFile)
        await stopEtcd(into: &stopped)
        await networkDown(into: &stopped)
        return stopped
    }

    /// Waits for SIGINT or SIGTERM.
    public static func waitForSignal() async {
        for await _ in await UnixSignalsSequence(trapping: .sigint, .sigterm) { return }
    }
}
