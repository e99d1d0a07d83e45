import ClusterCore
import Foundation

// The etcd members of a topology (`etcd:`): hand-started `etcd` processes (../shared/reference/etcd.md §2), each in
// a network namespace of its own joined to the hub's bridge when the topology has `network:`, else on loopback.
// They start before any doze node and are recorded in RUN/created (`etcd NAME PID`) the moment they exist; each
// member's directory RUN/etcd/NAME holds its data dir, log, exact command (one argument per line) and current PID,
// so that a chaos script can kill one and restart it with the same command and data.

extension ClusterLauncher {
    /// How long `down` lets members leave after SIGTERM before SIGKILL: a leader whose chosen successor is stopping
    /// too waits ~7 s for it (see `stopEtcd`); its WAL is on disk, so killing it then loses nothing.
    static let etcdStopWithin: Duration = .seconds(3)

    func etcdBinary() throws -> String {
        guard let path = Tool.find("etcd") else {
            throw LauncherError("topology '\(topology.name)' runs etcd: apt-get install etcd-server etcd-client (scripts/setup.sh --etcd)")
        }
        return path
    }

    /// The member's command line (after the binary): the same every time, so a restart reuses it as written.
    /// The initial-cluster flags only matter on a fresh data dir; a restarted member rejoins from its own.
    func etcdArguments(_ member: EtcdLayout.Member, of etcd: EtcdLayout, token: String) -> [String] {
        let cluster = etcd.members.map { "\($0.name)=\($0.peerURL)" }.joined(separator: ",")
        return ["--name", member.name, "--data-dir", member.dataDirectory, "--logger=zap",
                "--listen-client-urls", member.clientURL, "--advertise-client-urls", member.clientURL,
                "--listen-peer-urls", member.peerURL, "--initial-advertise-peer-urls", member.peerURL,
                "--initial-cluster", cluster, "--initial-cluster-token", token, "--initial-cluster-state", "new"]
    }

    /// Namespaces for the members, joined to the hub's bridge like controller hosts; recorded as made.
    func createEtcdNamespaces(_ etcd: EtcdLayout, _ layout: NetworkLayout, ip: String) async throws {
        let hub = ["-n", layout.hubNamespace]
        for member in etcd.members {
            guard let ns = member.namespace, let link = member.hubLink else { continue }
            try record("netns", ns)
            try await Tool.run(ip, ["netns", "add", ns])
            let inMember = ["-n", ns]
            try await Tool.run(ip, inMember + ["link", "set", "lo", "up"])
            try await Tool.run(ip, hub + ["link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns])
            try await Tool.run(ip, hub + ["link", "set", link, "master", "br0", "up"])
            try await Tool.run(ip, inMember + ["addr", "add", "\(member.address)/\(layout.prefixLength)", "dev", "eth0"])
            try await Tool.run(ip, inMember + ["link", "set", "eth0", "up"])
        }
    }

    /// Starts every member on a fresh data dir (a new cluster each `up`, with a token of its own so that a stray
    /// member of an earlier run can never join it) and records its PID. Does not wait: see `waitForEtcd`.
    func startEtcd(_ etcd: EtcdLayout, binary: String, ip: String?) throws {
        let fm = FileManager.default
        let token = "doze-\(topology.name)-\(UUID().uuidString.prefix(8).lowercased())"
        for member in etcd.members {
            try? fm.removeItem(atPath: member.directory)   // the data of an earlier run is left for inspection until now
            try fm.createDirectory(atPath: member.directory, withIntermediateDirectories: true)
            let command = [binary] + etcdArguments(member, of: etcd, token: token)
            try (command.joined(separator: "\n") + "\n").write(toFile: member.commandFile, atomically: true, encoding: .utf8)
            _ = fm.createFile(atPath: member.log, contents: nil)
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: member.log))
            defer { try? handle.close() }
            let process = Process()
            if let ns = member.namespace, let ip {
                process.executableURL = URL(fileURLWithPath: ip)
                process.arguments = ["netns", "exec", ns] + command
            } else {
                process.executableURL = URL(fileURLWithPath: binary)
                process.arguments = Array(command.dropFirst())
            }
            process.standardOutput = handle
            process.standardError = handle
            process.standardInput = FileHandle.nullDevice
            do { try process.run() } catch { throw LauncherError("cannot start etcd member \(member.name): \(error)") }
            // `ip netns exec` execs etcd: this PID is the member's own.
            try record("etcd", "\(member.name) \(process.processIdentifier)")
            try "\(process.processIdentifier)\n".write(toFile: member.pidFile, atomically: true, encoding: .utf8)
        }
    }

    /// Waits until every member answers `GET /health` with `{"health":"true"}` (which needs a quorum), asked from
    /// inside its namespace.
    func waitForEtcd(_ etcd: EtcdLayout, until deadline: ContinuousClock.Instant) async throws {
        var pending = etcd.members
        while !pending.isEmpty {
            // A member that exited fails `up` at once, not after the others time out waiting for it.
            // (Started just now by this process, so no name check: until `exec`, the child is still named after us.)
            if let dead = etcd.members.first(where: { !Self.running(Self.readPid($0.pidFile) ?? 0) }) {
                throw LauncherError("etcd member \(dead.name) exited (see \(dead.log)); its log ends:\n\(Self.tail(dead.log))")
            }
            var still: [EtcdLayout.Member] = []
            for member in pending {
                guard let endpoint = Endpoint(String(member.clientURL.dropFirst("http://".count))),
                      let reply = await NamespaceProbe.get(netns: member.namespace, endpoint, "/health", timeout: .seconds(1)),
                      reply.status == 200, reply.body.contains("\"health\":\"true\"") else { still.append(member); continue }
            }
            pending = still
            if let member = pending.first, ContinuousClock.now > deadline {
                throw LauncherError("etcd member \(member.name) did not become healthy on \(member.clientURL) (see \(member.log)); its log ends:\n\(Self.tail(member.log))")
            }
            if !pending.isEmpty { try await Task.sleep(for: .milliseconds(50)) }
        }
    }

    static func tail(_ log: String) -> String {
        (try? String(contentsOfFile: log, encoding: .utf8))?.split(separator: "\n").suffix(3).joined(separator: "\n") ?? ""
    }

    /// Every member PID this run knows: recorded at start, or written to RUN/etcd/NAME/pid by whoever restarted it.
    func etcdPids() -> [(name: String, pid: Int32)] {
        var pids = records().filter { $0.kind == "etcd" }.compactMap { Self.namedPid($0.value) }
        for member in topology.etcdLayout(runDirectory: runDirectory)?.members ?? [] {
            if let pid = Self.readPid(member.pidFile), !pids.contains(where: { $0.pid == pid }) { pids.append((member.name, pid)) }
        }
        return pids.filter { Self.memberAlive($0.pid) }
    }

    /// Stops the members by recorded PID only, in two waves: first every member that says it is a follower, then
    /// the rest. A leader stopped while its peers are still up tries to hand leadership to one of them and waits
    /// for it (~7 s, then SIGKILL here) when that peer is stopping too; once its peers are gone it sees no one to
    /// hand over to and exits at once (measured: followers 30 ms, then the leader 25 ms). Their data dirs stay in
    /// RUN/etcd until the next `up`.
    func stopEtcd(into stopped: inout Stopped) async {
        let live = etcdPids()
        guard !live.isEmpty else { return }
        let members = topology.etcdLayout(runDirectory: runDirectory)?.members ?? []
        var followers: [Int32] = []
        for (name, pid) in live {
            guard let member = members.first(where: { $0.name == name }),
                  let endpoint = Endpoint(String(member.clientURL.dropFirst("http://".count))),
                  let reply = await NamespaceProbe.get(netns: member.namespace, endpoint, "/metrics", timeout: .milliseconds(500)),
                  reply.status == 200, reply.body.contains("\netcd_server_is_leader 0") else { continue }
            followers.append(pid)
        }
        for pid in followers { kill(pid, SIGTERM) }
        await Self.waitGone(followers, named: "etcd", within: .seconds(2))
        let rest = live.map(\.pid).filter { !followers.contains($0) }
        for pid in rest { kill(pid, SIGTERM) }
        await Self.waitGone(rest, named: "etcd", within: Self.etcdStopWithin)
        stopped.etcdMembers += Set(live.map(\.name)).count
        for member in members { try? FileManager.default.removeItem(atPath: member.pidFile) }
    }

    /// A member runs as `ip netns exec NS etcd …`: until `ip` has exec'ed etcd, the process is still named `ip`.
    static func memberAlive(_ pid: Int32) -> Bool { alive(pid, named: "etcd") || alive(pid, named: "ip") }

    /// Runs and is not a zombie.
    static func running(_ pid: Int32) -> Bool {
        guard pid > 1, kill(pid, 0) == 0, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        return !stat[stat.index(after: close)...].hasPrefix(" Z")
    }
}
