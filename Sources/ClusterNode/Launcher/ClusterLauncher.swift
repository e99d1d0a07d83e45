import ClusterCore
import ClusterTransport
import Foundation
import NIOCore
import NIOHTTP1
import UnixSignals

/// `doze cluster up` / `down`: every node of a topology as its own OS process on this machine, with per-node
/// logs and pid files in a run directory.
public struct ClusterLauncher {
    public struct Launched: Sendable {
        public var name: String
        public var role: NodeRole
        public var listen: String
        public var pid: Int32
        public var log: String
    }

    public let topology: Topology
    public let topologyDirectory: String
    public let runDirectory: String
    public let binary: String

    public init(topologyFile: String, runDirectory: String?, binary: String) throws {
        let (topology, dir) = try Topology.load(topologyFile)
        self.topology = topology
        self.topologyDirectory = dir
        let cwd = FileManager.default.currentDirectoryPath
        let run = runDirectory ?? topology.runDir ?? ".state/cluster-\(topology.name)"
        self.runDirectory = run.hasPrefix("/") ? run : cwd + "/" + run
        self.binary = binary
    }

    func resolve(_ path: String) -> String { path.hasPrefix("/") ? path : topologyDirectory + "/" + path }

    /// (name, role, arguments) for every node, in start order: bootstraps, managers, controllers.
    func plan() throws -> [(String, NodeRole, String, [String])] {
        var common = topology.bootstrap.flatMap { ["--bootstrap", $0.listen] }
        // An inline secret reaches the nodes through DOZE_SECRET (see `up`), never argv, which `ps` shows to everyone.
        if let file = topology.secretFile { common += ["--secret-file", resolve(file)] }
        if let h = topology.heartbeat {
            for (flag, value) in [("--heartbeat-interval-ms", h.intervalMs), ("--controller-timeout-ms", h.controllerTimeoutMs),
                                  ("--manager-timeout-ms", h.managerTimeoutMs), ("--leader-manager-timeout-ms", h.leaderManagerTimeoutMs),
                                  ("--leader-timeout-ms", h.leaderTimeoutMs)] {
                if let value { common += [flag, "\(value)"] }
            }
        }
        if let group = topology.multicast { common += ["--multicast", group] }
        var plan: [(String, NodeRole, String, [String])] = []
        for (i, n) in topology.bootstrap.enumerated() {
            let name = n.name ?? "bootstrap-\(i + 1)"
            plan.append((name, .bootstrap, n.listen, ["bootstrap", "--listen", n.listen, "--state-dir", "\(runDirectory)/\(name)"] + common))
        }
        for (i, n) in topology.managers.enumerated() {
            let name = n.name ?? "gm-\(i + 1)"
            var args = ["gm", "--listen", n.listen, "--state-dir", "\(runDirectory)/\(name)", "--election-dir", "\(runDirectory)/election"]
            if let a = topology.assignment { args += ["--assignment", a] }
            if let v = topology.vmSubnet { args += ["--vm-subnet", v] }
            if let d = topology.dispatch { args += ["--dispatch", d] }
            if let p = topology.placement { args += ["--placement", p] }
            if let t = topology.resultTTLSeconds { args += ["--result-ttl", "\(t)"] }
            plan.append((name, .groupManager, n.listen, args + common))
        }
        for (i, n) in topology.controllers.enumerated() {
            let name = n.name ?? "lc-\(i + 1)"
            let uri = n.hypervisor ?? "test://" + resolve(n.host!)
            plan.append((name, .localController, n.listen,
                         ["lc", "--listen", n.listen, "--hypervisor", uri, "--state-dir", "\(runDirectory)/\(name)"] + common))
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
    public func up(readyWithin limit: Duration = .seconds(30)) async throws -> [Launched] {
        if !runningPids().isEmpty {
            throw LauncherError("a cluster from \(runDirectory) is already running; run `doze cluster down` first")
        }
        try FileManager.default.createDirectory(atPath: pidDirectory, withIntermediateDirectories: true)
        var launched: [Launched] = []
        for (name, role, listen, args) in try plan() {
            let log = "\(runDirectory)/\(name).log"
            FileManager.default.createFile(atPath: log, contents: nil)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = args
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
            launched.append(Launched(name: name, role: role, listen: listen, pid: process.processIdentifier, log: log))
        }
        let deadline = ContinuousClock.now + limit
        for node in launched {
            while !(await Self.healthy(node.listen)) {
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
        return launched
    }

    static func healthy(_ listen: String) async -> Bool {
        guard let endpoint = Endpoint(listen),
              let (status, body) = try? await PeerClient(timeout: .seconds(1)).send(.GET, endpoint, "/health") else { return false }
        return status == 200 && String(buffer: body) == "ok"
    }

    /// SIGTERM to every node started from this run directory, then SIGKILL to any left after 5 s.
    @discardableResult
    public func down() async -> Int {
        let running = runningPids()
        for (_, pid) in running { kill(pid, SIGTERM) }
        let deadline = ContinuousClock.now + .seconds(5)
        while running.contains(where: { kill($0.1, 0) == 0 }) && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
        for (_, pid) in running where kill(pid, 0) == 0 { kill(pid, SIGKILL) }
        try? FileManager.default.removeItem(atPath: pidDirectory)
        return running.count
    }

    /// Waits for SIGINT or SIGTERM.
    public static func waitForSignal() async {
        for await _ in await UnixSignalsSequence(trapping: .sigint, .sigterm) { return }
    }
}
