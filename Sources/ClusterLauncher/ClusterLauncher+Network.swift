import ClusterCore
import ClusterTransport
import ClusterWire
import Foundation
import NIOCore
import NIOHTTP1

// A network-namespace topology (`network:`): a real multi-host cluster on one machine. A hub namespace holds a
// bridge with the hub address (bootstraps, group managers); each controller's namespace joins the bridge through
// a veth pair and may run its own libvirtd in a private mount namespace (../shared/reference/kvm.md §3-5). Nothing
// is added to the root network namespace except the forwarder's listening socket.
//
// Everything is recorded in RUN/created the moment it exists, so `down` undoes exactly that, after a partial `up`
// too, and nothing else: only recorded namespaces, mount points and PIDs (checked by name against PID reuse).

/// The programs and scripts a network-namespace topology needs, found before anything is created.
struct NetworkTools: Sendable {
    var ip: String
    var unshare: String
    var libvirtd: String
    var virsh: String
    var python3: String
    var cp: String
    var subreaper: String
    var forwarder: String
    /// Empty unless the topology has `etcd:`.
    var etcd: String
}

extension ClusterLauncher {
    var recordFile: String { runDirectory + "/created" }
    /// libvirt's mount points must exist for the private trees to be bind-mounted over them.
    static let libvirtMountPoints = ["/run/libvirt", "/var/lib/libvirt", "/var/log/libvirt", "/var/cache/libvirt"]
    /// QEMU capabilities cache shared by every run of every network topology (kvm.md §6): the first connection to
    /// a fresh daemon takes ~0.1 s with it instead of seconds. libvirt re-probes a stale one.
    var capabilitiesSeed: String { (runDirectory as NSString).deletingLastPathComponent + "/libvirt-caps-seed" }

    // MARK: - Records

    func record(_ kind: String, _ value: String) throws {
        if !FileManager.default.fileExists(atPath: recordFile) { _ = FileManager.default.createFile(atPath: recordFile, contents: nil) }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: recordFile))
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("\(kind) \(value)\n".utf8))
        try handle.synchronize()
    }

    func records() -> [(kind: String, value: String)] {
        guard let text = try? String(contentsOfFile: recordFile, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            guard let space = line.firstIndex(of: " ") else { return nil }
            return (String(line[..<space]), String(line[space...].dropFirst()))
        }
    }

    // MARK: - Preflight

    func networkTools() throws -> NetworkTools {
        guard geteuid() == 0 else {
            throw LauncherError("topology '\(topology.name)' uses network namespaces and starts libvirtd: run it as root (sudo doze cluster …)")
        }
        var missing: [String] = []
        func need(_ name: String, _ package: String) -> String {
            if let path = Tool.find(name) { return path }
            missing.append("\(name) (apt-get install \(package))")
            return ""
        }
        let needsDaemon = topology.controllers.contains { $0.libvirtd == true }
        let tools = NetworkTools(
            ip: need("ip", "iproute2"), unshare: need("unshare", "util-linux"),
            libvirtd: needsDaemon ? need("libvirtd", "libvirt-daemon") : "", virsh: needsDaemon ? need("virsh", "libvirt-clients") : "",
            python3: need("python3", "python3"), cp: need("cp", "coreutils"),
            subreaper: try script("subreaper.py"), forwarder: try script("netns-forward.py"),
            etcd: topology.etcd == nil ? "" : need("etcd", "etcd-server"))
        if needsDaemon {
            _ = need("qemu-system-x86_64", "qemu-system-x86")
            let drivers = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"]
                .map { "\($0)/libvirt/connection-driver/libvirt_driver_qemu.so" }
            if !drivers.contains(where: FileManager.default.fileExists(atPath:)) {
                missing.append("libvirt's QEMU driver (apt-get install libvirt-daemon-driver-qemu)")
            }
        }
        guard missing.isEmpty else {
            throw LauncherError("topology '\(topology.name)' needs: \(missing.joined(separator: ", ")); scripts/setup.sh --netns\(topology.etcd == nil ? "" : " --etcd") installs them all")
        }
        return tools
    }

    /// A helper script of this repository's `scripts/`: next to the topology's directory, or above the binary.
    func script(_ name: String) throws -> String {
        var candidates: [String] = []
        if let dir = ProcessInfo.processInfo.environment["DOZE_SCRIPTS"] { candidates.append(dir) }
        candidates.append(topologyDirectory + "/../scripts")
        var dir = (binary as NSString).deletingLastPathComponent
        for _ in 0..<5 {
            candidates.append(dir + "/scripts")
            dir = (dir as NSString).deletingLastPathComponent
        }
        for directory in candidates where FileManager.default.fileExists(atPath: directory + "/" + name) {
            return URL(fileURLWithPath: directory + "/" + name).standardizedFileURL.path
        }
        throw LauncherError("cannot find scripts/\(name) (looked next to \(topologyDirectory) and above \(binary)); set DOZE_SCRIPTS to the directory")
    }

    // MARK: - Up

    /// Namespaces, the bridge, veth pairs, mount points, etcd members and daemons: everything the nodes need,
    /// recorded as made. The members are started, not waited for: their election overlaps the daemons' start.
    func networkUp(_ layout: NetworkLayout, _ tools: NetworkTools, etcd: EtcdLayout?) async throws {
        let fm = FileManager.default
        if layout.hosts.contains(where: { $0.daemonDirectory != nil }) {
            try await ensureLibvirtQemuUser()
            for dir in Self.libvirtMountPoints where !fm.fileExists(atPath: dir) {
                try record("mountpoint", dir)
                try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
            }
        }
        let ip = tools.ip
        for ns in [layout.hubNamespace] + layout.bridged.map(\.namespace) + (etcd?.members.compactMap(\.namespace) ?? []) {
            if fm.fileExists(atPath: "/run/netns/\(ns)") {
                throw LauncherError("network namespace \(ns) already exists (left by another run? `ip netns del \(ns)` if it is yours)")
            }
        }
        try record("netns", layout.hubNamespace)
        try await Tool.run(ip, ["netns", "add", layout.hubNamespace])
        let hub = ["-n", layout.hubNamespace]
        try await Tool.run(ip, hub + ["link", "set", "lo", "up"])
        try await Tool.run(ip, hub + ["link", "add", "br0", "type", "bridge"])
        try await Tool.run(ip, hub + ["addr", "add", "\(layout.hubAddress)/\(layout.prefixLength)", "dev", "br0"])
        try await Tool.run(ip, hub + ["link", "set", "br0", "up"])
        for host in layout.bridged {
            try record("netns", host.namespace)
            try await Tool.run(ip, ["netns", "add", host.namespace])
            let inHost = ["-n", host.namespace]
            try await Tool.run(ip, inHost + ["link", "set", "lo", "up"])
            // Made inside the hub with its peer sent straight to the host: the pair never exists in the root namespace.
            try await Tool.run(ip, hub + ["link", "add", host.hubLink, "type", "veth", "peer", "name", "eth0", "netns", host.namespace])
            try await Tool.run(ip, hub + ["link", "set", host.hubLink, "master", "br0", "up"])
            try await Tool.run(ip, inHost + ["addr", "add", "\(host.address)/\(layout.prefixLength)", "dev", "eth0"])
            try await Tool.run(ip, inHost + ["link", "set", "eth0", "up"])
        }
        if let etcd {
            try await createEtcdNamespaces(etcd, layout, ip: ip)
            try startEtcd(etcd, binary: tools.etcd, ip: ip)
        }
        for (i, host) in layout.hosts.enumerated() {
            guard let dir = host.daemonDirectory else { continue }
            try await startDaemon(host, dir: dir, index: i, tools)
        }
    }

    /// The daemon refuses to start without this user, even when told to run QEMU as root (kvm.md §3).
    func ensureLibvirtQemuUser() async throws {
        if getpwnam("libvirt-qemu") != nil { return }
        if getgrnam("libvirt-qemu") == nil, let groupadd = Tool.find("groupadd") { try await Tool.run(groupadd, ["-r", "libvirt-qemu"]) }
        guard let useradd = Tool.find("useradd") else { throw LauncherError("the user libvirt-qemu is missing and useradd is not installed") }
        try await Tool.run(useradd, ["-r", "-g", "libvirt-qemu", "-d", "/var/lib/libvirt", "-s", "/usr/sbin/nologin", "libvirt-qemu"])
    }

    /// One hand-started libvirtd: a private config/state tree bind-mounted over the standard paths in a private mount
    /// namespace inside the host's network namespace, under a child subreaper (kvm.md §3, §5).
    func startDaemon(_ host: NetworkLayout.Host, dir: String, index: Int, _ tools: NetworkTools) async throws {
        let fm = FileManager.default
        try? fm.removeItem(atPath: dir)   // a fresh host every time: no definitions or logs of an earlier run
        for sub in ["etc", "run", "lib", "log", "cache"] { try fm.createDirectory(atPath: "\(dir)/\(sub)", withIntermediateDirectories: true) }
        let clientConf = (try? String(contentsOfFile: "/etc/libvirt/libvirt.conf", encoding: .utf8)) ?? ""
        try clientConf.write(toFile: "\(dir)/etc/libvirt.conf", atomically: true, encoding: .utf8)
        try "127.0.0.1 localhost\n\(host.address) \(host.name)\n".write(toFile: "\(dir)/hosts", atomically: true, encoding: .utf8)
        // A distinct host UUID per daemon, or migration between them is refused as "to the same host".
        let uuid = String(format: "d0ce0000-0000-4000-8000-%012x", index + 1)
        try """
        listen_tls = 0
        listen_tcp = 1
        listen_addr = "\(host.address)"
        auth_tcp = "none"
        auth_unix_rw = "none"
        host_uuid = "\(uuid)"
        log_outputs = "3:file:/var/log/libvirt/libvirtd.log"

        """.write(toFile: "\(dir)/etc/libvirtd.conf", atomically: true, encoding: .utf8)
        // Root QEMU with no labelling, cgroups, per-VM namespaces or virtlogd: nothing outside the private tree.
        // migration_host: libvirt would otherwise put the hostname into the migration URI, which nothing resolves.
        try """
        user = "root"
        group = "root"
        dynamic_ownership = 0
        remember_owner = 0
        security_driver = "none"
        cgroup_controllers = [ ]
        namespaces = [ ]
        stdio_handler = "file"
        migration_host = "\(host.address)"
        migration_address = "\(host.address)"

        """.write(toFile: "\(dir)/etc/qemu.conf", atomically: true, encoding: .utf8)
        if fm.fileExists(atPath: capabilitiesSeed + "/capabilities") {
            _ = try? await Tool.run(tools.cp, ["-a", capabilitiesSeed, "\(dir)/cache/qemu"])
        }
        let quote = Tool.quote
        let mounts = [("etc", "/etc/libvirt"), ("run", "/run/libvirt"), ("lib", "/var/lib/libvirt"), ("log", "/var/log/libvirt"),
                      ("cache", "/var/cache/libvirt"), ("hosts", "/etc/hosts")]
            .map { "mount --bind \(quote(dir + "/" + $0.0)) \($0.1)" }.joined(separator: "\n")
        let script = """
        set -e
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
        hostname \(quote(host.name))
        \(mounts)
        exec \(quote(tools.python3)) \(quote(tools.subreaper)) \(quote(tools.libvirtd)) -d -l -p \(quote(dir + "/libvirtd.pid"))
        """
        // Kept for restarts (RUN/layout.json's `daemons`: the power agent starts a host's daemon again with it).
        try script.write(toFile: "\(dir)/start.sh", atomically: true, encoding: .utf8)
        let out = "\(dir)/daemon.out"
        _ = fm.createFile(atPath: out, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        defer { try? handle.close() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tools.ip)
        process.arguments = ["netns", "exec", host.namespace, tools.unshare, "--mount", "--uts", "--propagation", "private", "/bin/sh", "-c", script]
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // `ip` execs unshare, sh and python in turn: this PID is the subreaper's.
        try record("reaper", "\(host.name) \(process.processIdentifier)")
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline {
            if let pid = Self.readPid("\(dir)/libvirtd.pid"), fm.fileExists(atPath: "\(dir)/run/libvirt-sock") {
                try record("daemon", "\(host.name) \(pid)")
                return
            }
            if !process.isRunning { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        if let pid = Self.readPid("\(dir)/libvirtd.pid") { try record("daemon", "\(host.name) \(pid)") }
        let tail = (try? String(contentsOfFile: out, encoding: .utf8))?.split(separator: "\n").suffix(5).joined(separator: "\n") ?? ""
        throw LauncherError("libvirtd of \(host.name) did not start (see \(dir)/daemon.out and \(dir)/log/libvirtd.log):\n\(tail)")
    }

    static func readPid(_ path: String) -> Int32? {
        (try? String(contentsOfFile: path, encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// The forwarder that lets clients in the root namespace reach the first bootstrap (its PID joins the nodes').
    func startForwarder(_ layout: NetworkLayout, _ tools: NetworkTools) throws -> Launched {
        let log = "\(runDirectory)/forwarder.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        defer { try? handle.close() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tools.python3)
        process.arguments = [tools.forwarder, layout.clientListen, layout.hubNamespace, topology.bootstrap[0].listen]
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try "\(process.processIdentifier)\n".write(toFile: "\(pidDirectory)/forwarder.pid", atomically: true, encoding: .utf8)
        return Launched(name: "forwarder", role: "forwarder", listen: layout.clientListen, pid: process.processIdentifier, log: log,
                        namespace: nil, hypervisor: nil, command: [tools.python3] + process.arguments!)
    }

    /// /health says a node serves; work also needs every controller to have joined a manager (a heartbeat round or
    /// two later). Waits for that through the forwarder, so `up` returns a cluster that takes submissions.
    func waitForControllers(_ layout: NetworkLayout, until deadline: ContinuousClock.Instant) async throws {
        guard let endpoint = Endpoint(layout.clientListen) else { return }
        var joined = 0
        while ContinuousClock.now < deadline {
            if let (status, body) = try? await PeerClient(timeout: .seconds(1)).send(.GET, endpoint, "/bootstrap?getLocalControllerList"),
               status == 200, let list = try? JSONDecoder().decode(LocalControllerList.self, from: Data(body.readableBytesView)) {
                joined = list.localControllers.count
                if joined >= layout.hosts.count { return }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw LauncherError("only \(joined) of \(layout.hosts.count) local controllers joined a group manager in time; see \(runDirectory)/*.log")
    }

    /// Keeps the first QEMU capabilities a daemon probed for the next runs. The probe is lazy (the first define or
    /// capabilities call), so `down` looks too.
    func saveCapabilitiesSeed(_ layout: NetworkLayout, cp: String) async {
        let fm = FileManager.default
        guard !fm.fileExists(atPath: capabilitiesSeed),
              let dir = layout.hosts.compactMap(\.daemonDirectory).first(where: {
                  !((try? fm.contentsOfDirectory(atPath: "\($0)/cache/qemu/capabilities")) ?? []).isEmpty }) else { return }
        _ = try? await Tool.run(cp, ["-a", "\(dir)/cache/qemu", capabilitiesSeed])
    }

    // MARK: - Down

    /// Guests, daemons, namespaces and mount points this run directory recorded, in that order; idempotent.
    func networkDown(into stopped: inout Stopped) async {
        let recorded = records()
        let layout = topology.layout(runDirectory: runDirectory)
        guard !recorded.isEmpty else { return }
        let ip = Tool.find("ip") ?? "/usr/sbin/ip"
        let daemons = recorded.filter { $0.kind == "daemon" }.compactMap { Self.namedPid($0.value) }
        let reapers = recorded.filter { $0.kind == "reaper" }.compactMap { Self.namedPid($0.value) }
        // Guests first: QEMU outlives its daemon. Destroy and undefine each through its daemon's socket.
        if let virsh = Tool.find("virsh"), let layout {
            for host in layout.hosts {
                guard let uri = host.socketURI, daemons.contains(where: { $0.name == host.name && Self.alive($0.pid, named: "libvirtd") })
                else { continue }
                let names = ((try? await Tool.run(virsh, ["-q", "-c", uri, "list", "--all", "--name"], timeout: .seconds(15))) ?? "")
                    .split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
                await withTaskGroup(of: Void.self) { group in
                    for name in names {
                        group.addTask {
                            _ = try? await Tool.run(virsh, ["-q", "-c", uri, "destroy", name], timeout: .seconds(15))
                            _ = try? await Tool.run(virsh, ["-q", "-c", uri, "undefine", name], timeout: .seconds(15))
                        }
                    }
                }
                stopped.guests += names.count
            }
        }
        if let layout, let cp = Tool.find("cp") { await saveCapabilitiesSeed(layout, cp: cp) }
        let liveDaemons = daemons.filter { Self.alive($0.pid, named: "libvirtd") }
        for daemon in liveDaemons { kill(daemon.pid, SIGTERM) }
        await Self.waitGone(liveDaemons.map(\.pid), named: "libvirtd", within: .seconds(5))
        stopped.daemons += liveDaemons.count
        // A guest its daemon could not destroy (or one whose daemon died) is still running: its pidfile names it.
        for host in layout?.hosts ?? [] {
            guard let dir = host.daemonDirectory else { continue }
            let files = (try? FileManager.default.contentsOfDirectory(atPath: "\(dir)/run/qemu")) ?? []
            for file in files where file.hasSuffix(".pid") {
                if let pid = Self.readPid("\(dir)/run/qemu/\(file)"), Self.alive(pid, named: "qemu") {
                    kill(pid, SIGKILL)
                    stopped.guests += 1
                }
            }
        }
        // The subreaper leaves by itself once its subtree is gone; one still there is stuck, or was left alone.
        let liveReapers = reapers.filter { Self.alive($0.pid, named: "python") }
        await Self.waitGone(liveReapers.map(\.pid), named: "python", within: .seconds(2))
        for reaper in liveReapers where Self.alive(reaper.pid, named: "python") { kill(reaper.pid, SIGKILL) }
        for ns in recorded.filter({ $0.kind == "netns" }).map(\.value).reversed()
        where FileManager.default.fileExists(atPath: "/run/netns/\(ns)") {
            if (try? await Tool.run(ip, ["netns", "del", ns])) != nil { stopped.namespaces += 1 }
        }
        for dir in recorded.filter({ $0.kind == "mountpoint" }).map(\.value) where FileManager.default.fileExists(atPath: dir) {
            if rmdir(dir) == 0 { stopped.mountPoints += 1 }
        }
        try? FileManager.default.removeItem(atPath: recordFile)
    }

    static func namedPid(_ value: String) -> (name: String, pid: Int32)? {
        let parts = value.split(separator: " ")
        guard parts.count == 2, let pid = Int32(parts[1]) else { return nil }
        return (String(parts[0]), pid)
    }

    /// Alive, and still the program we started (a recycled PID belongs to someone else).
    /// A zombie counts as gone: it waits only for its parent (slow PID 1 here) to reap it.
    static func alive(_ pid: Int32, named prefix: String) -> Bool {
        guard pid > 1, kill(pid, 0) == 0, let comm = try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8),
              let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        return comm.hasPrefix(prefix) && !stat[stat.index(after: close)...].hasPrefix(" Z")
    }

    static func waitGone(_ pids: [Int32], named prefix: String, within limit: Duration) async {
        let deadline = ContinuousClock.now + limit
        while pids.contains(where: { alive($0, named: prefix) }) {
            if ContinuousClock.now > deadline {
                for pid in pids where alive(pid, named: prefix) { kill(pid, SIGKILL) }
                return
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }
}
