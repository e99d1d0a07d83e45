import ClusterCore
import Foundation
import Logging

/// Which data plane a local controller drives for VM networks (`--data-plane linux|none`).
public enum DataPlaneMode: String, Sendable, CaseIterable {
    /// Linux bridges, VXLAN, nftables and dnsmasq on this host (root).
    case linux
    /// No host networking: switches and floating IPs are booked but nothing is set up here.
    case none
}

/// The per-host data plane of VM networks: switches (bridge + VXLAN + anycast gateway + DHCP) and floating IPs
/// (/32 on the underlay + DNAT/SNAT + gratuitous ARP). The commands come from `DataPlanePlan`, computed from what the
/// host has right now, so every call is idempotent and a restarted controller adopts what exists: the devices, the
/// nftables maps and the dnsmasq processes (found by their pid files under `stateDirectory`).
///
/// Runs in the host's network namespace (the local controller's own), as root. Every command is bounded in time
/// (`AgentCommand`). Calls are serialised by the actor, so two calls never interleave their observe/apply steps.
public actor HostDataPlane {
    public struct Settings: Sendable {
        /// The interface toward the other hosts: VXLAN runs over it, floating IPs are added to it.
        public var underlay: String
        /// Where the dnsmasq files live (`<dir>/dz-br<VNI>.{hosts,leases,pid,log}`); created if missing.
        public var stateDirectory: String
        /// The longest any one command may take.
        public var commandTimeout: Duration = .seconds(10)
        public var logger = Logger(label: "doze.dataplane")

        public init(underlay: String, stateDirectory: String) {
            self.underlay = underlay
            self.stateDirectory = stateDirectory
        }
    }

    /// The programs found by `probe()`.
    public struct Tools: Sendable, Equatable {
        public var ip: String
        public var nft: String
        public var dnsmasq: String
        /// `arping`, or busybox (then run as `busybox arping`).
        public var arping: String
        public var arpingIsBusybox: Bool
    }

    public enum Availability: Sendable, Equatable {
        case available(Tools)
        /// Why not: not root, or which programs are missing (and their Debian packages).
        case unavailable([String])
    }

    /// Whether this host can run the Linux data plane: root, and `ip`, `nft`, `dnsmasq` and an `arping`.
    public static func probe() -> Availability {
        var missing: [String] = []
        if geteuid() != 0 { missing.append("root (it changes the host's links and nftables)") }
        func need(_ name: String, _ package: String) -> String {
            if let path = find(name) { return path }
            missing.append("\(name) (apt-get install \(package))")
            return ""
        }
        let ip = need("ip", "iproute2"), nft = need("nft", "nftables"), dnsmasq = need("dnsmasq", "dnsmasq-base")
        var arping = find("arping") ?? "", busybox = false
        if arping.isEmpty, let path = find("busybox") { arping = path; busybox = true }
        if arping.isEmpty { missing.append("arping (apt-get install iputils-arping or busybox-static)") }
        guard missing.isEmpty else { return .unavailable(missing) }
        return .available(Tools(ip: ip, nft: nft, dnsmasq: dnsmasq, arping: arping, arpingIsBusybox: busybox))
    }

    /// The data plane for `mode`: nil for `none`; for `linux`, one that can run here, else an error saying why not.
    public static func make(mode: DataPlaneMode, settings: Settings) throws -> HostDataPlane? {
        guard mode == .linux else { return nil }
        switch probe() {
        case .available(let tools): return HostDataPlane(settings: settings, tools: tools)
        case .unavailable(let missing):
            throw DozeError(.unsupported, "--data-plane linux needs \(missing.joined(separator: ", "))")
        }
    }

    static func find(_ name: String) -> String? {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
        for dir in path + ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] where FileManager.default.isExecutableFile(atPath: "\(dir)/\(name)") {
            return "\(dir)/\(name)"
        }
        return nil
    }

    let settings: Settings
    let tools: Tools
    var log: Logger { settings.logger }

    public init(settings: Settings, tools: Tools) {
        self.settings = settings
        self.tools = tools
    }

    // MARK: - Switches

    /// Makes switch `vni` exist on this host with `gateway` (e.g. "10.200.0.1/24"): bridge, VXLAN device, the bridge
    /// filter, IP forwarding, and a running dnsmasq for it. Idempotent.
    public func ensureSwitch(vni: Int, gateway: String) async throws {
        guard let cidr = IPv4Interface(gateway) else { throw DozeError(.badRequest, "gateway '\(gateway)' is not ADDRESS/PREFIX") }
        try await ensureSwitch(SwitchSpec(vni: vni, gateway: cidr))
    }

    public func ensureSwitch(_ spec: SwitchSpec) async throws {
        let links = try await observeLinks()
        let commands = try DataPlanePlan.ensureSwitch(spec, underlay: settings.underlay, links: links)
        try await run(commands)
        try await run([DataPlanePlan.Command(.nft, ["-f", "-"], input: DataPlanePlan.bridgeRuleset)])
        try enableForwarding()
        try await ensureDnsmasq(spec, mtu: (links.first { $0.name == settings.underlay }?.mtu ?? 1500) - DataPlanePlan.vxlanOverhead)
        if !commands.isEmpty {
            log.info("switch ready", metadata: ["doze/vni": "\(spec.vni)", "doze/gateway": "\(spec.gateway)", "doze/commands": "\(commands.count)"])
        }
    }

    /// The switches this host has now (bridges named dz-br<VNI> with their gateway).
    public func switches() async throws -> [SwitchSpec] {
        DataPlanePlan.existingSwitches(try await observeLinks())
    }

    /// Removes switch `vni` from this host when no VM uses it here: no VM port on its bridge and no DHCP lease.
    /// Returns whether it is gone (true also when it did not exist).
    @discardableResult
    public func removeSwitchIfUnused(vni: Int) async throws -> Bool {
        let links = try await observeLinks()
        let ports = DataPlanePlan.vmPorts(vni: vni, links: links)
        let leases = readLeases(vni: vni)
        guard ports.isEmpty, leases.isEmpty else {
            log.debug("switch still used", metadata: ["doze/vni": "\(vni)", "doze/ports": "\(ports)", "doze/leases": "\(leases.count)"])
            return false
        }
        await stopDnsmasq(vni: vni)
        for file in ["hosts", "leases", "pid", "log"] { try? FileManager.default.removeItem(atPath: path(vni: vni, file)) }
        try await run(DataPlanePlan.removeSwitch(vni: vni, links: links))
        log.info("switch removed", metadata: ["doze/vni": "\(vni)"])
        return true
    }

    // MARK: - DHCP leases

    /// Gives `mac` the address `ip` on switch `vni` (which must exist here); replaces any lease of that MAC or IP.
    public func addLease(vni: Int, mac: String, ip: String, hostname: String = "") async throws {
        guard let mac = MACAddress(mac) else { throw DozeError(.badRequest, "'\(mac)' is not a MAC address") }
        guard let address = IPv4Address(ip) else { throw DozeError(.badRequest, "'\(ip)' is not an IPv4 address") }
        let lease = try DHCPLease(mac: mac, ip: address, hostname: hostname)
        var leases = readLeases(vni: vni).filter { $0.mac != lease.mac && $0.ip != lease.ip }
        leases.append(lease)
        try await writeLeases(vni: vni, leases)
    }

    /// Removes the lease of `mac` on switch `vni`, if any.
    public func removeLease(vni: Int, mac: String) async throws {
        guard let mac = MACAddress(mac) else { throw DozeError(.badRequest, "'\(mac)' is not a MAC address") }
        let leases = readLeases(vni: vni)
        let kept = leases.filter { $0.mac != mac }
        if kept.count != leases.count { try await writeLeases(vni: vni, kept) }
    }

    public func leases(vni: Int) -> [DHCPLease] { readLeases(vni: vni) }

    func readLeases(vni: Int) -> [DHCPLease] {
        DataPlanePlan.parseHostsFile((try? String(contentsOfFile: path(vni: vni, "hosts"), encoding: .utf8)) ?? "")
    }

    func writeLeases(vni: Int, _ leases: [DHCPLease]) async throws {
        try prepareStateDirectory()
        try DataPlanePlan.hostsFile(leases).write(toFile: path(vni: vni, "hosts"), atomically: true, encoding: .utf8)
        try setReadable(path(vni: vni, "hosts"))
        if let pid = dnsmasqPID(vni: vni) { kill(pid, SIGHUP) }   // dnsmasq re-reads --dhcp-hostsfile
    }

    // MARK: - Floating IPs

    /// Makes `floating` reach `privateIP` through this host and announces it (gratuitous ARP). Idempotent; replaces
    /// another binding of either address on this host.
    public func bindFloatingIP(_ floating: String, to privateIP: String) async throws {
        let (fip, address) = try addresses(floating, privateIP)
        try await ensureNATTable()
        let links = try await observeLinks()
        let (dnat, snat) = try await observeMaps()
        try enableForwarding()
        try await run(DataPlanePlan.bindFloatingIP(fip, to: address, underlay: settings.underlay, links: links, dnat: dnat, snat: snat))
        log.info("floating IP bound", metadata: ["doze/fip": "\(fip)", "doze/private": "\(address)"])
    }

    /// Undoes `bindFloatingIP` for `floating`; nothing when it is not bound here.
    public func unbindFloatingIP(_ floating: String) async throws {
        guard let fip = IPv4Address(floating) else { throw DozeError(.badRequest, "'\(floating)' is not an IPv4 address") }
        let links = try await observeLinks()
        let (dnat, snat) = try await natTableExists() ? try await observeMaps() : ([:], [:])
        let commands = DataPlanePlan.unbindFloatingIP(fip, underlay: settings.underlay, links: links, dnat: dnat, snat: snat)
        try await run(commands)
        if !commands.isEmpty { log.info("floating IP unbound", metadata: ["doze/fip": "\(fip)"]) }
    }

    /// The floating IPs bound on this host: floating → private.
    public func floatingIPs() async throws -> [String: String] {
        guard try await natTableExists() else { return [:] }
        let (dnat, _) = try await observeMaps()
        return Dictionary(uniqueKeysWithValues: dnat.map { ($0.key.description, $0.value.description) })
    }

    func addresses(_ floating: String, _ privateIP: String) throws -> (IPv4Address, IPv4Address) {
        guard let fip = IPv4Address(floating) else { throw DozeError(.badRequest, "'\(floating)' is not an IPv4 address") }
        guard let address = IPv4Address(privateIP) else { throw DozeError(.badRequest, "'\(privateIP)' is not an IPv4 address") }
        return (fip, address)
    }

    func natTableExists() async throws -> Bool {
        await AgentCommand.run(tools.nft, ["list", "table", "ip", "doze"], what: "nft list table ip doze", timeout: settings.commandTimeout).succeeded
    }

    func ensureNATTable() async throws {
        if try await natTableExists() { return }
        try await run([DataPlanePlan.Command(.nft, ["-f", "-"], input: DataPlanePlan.natRuleset(underlay: settings.underlay))])
    }

    func observeMaps() async throws -> (dnat: [IPv4Address: IPv4Address], snat: [IPv4Address: IPv4Address]) {
        func map(_ name: String) async throws -> [IPv4Address: IPv4Address] {
            try DataPlanePlan.parseMap(json: Data(try await output(tools.nft, ["-j", "list", "map", "ip", "doze", name]).utf8))
        }
        return (try await map("fip_dnat"), try await map("fip_snat"))
    }

    // MARK: - dnsmasq

    func path(vni: Int, _ suffix: String) -> String { "\(settings.stateDirectory)/\(DataPlanePlan.bridgeName(vni: vni)).\(suffix)" }

    /// The pid of switch `vni`'s dnsmasq when it runs: the pid file's process, if it is a dnsmasq started with that
    /// pid file (not a reused pid).
    func dnsmasqPID(vni: Int) -> pid_t? {
        let pidFile = path(vni: vni, "pid")
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
              let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0, kill(pid, 0) == 0,
              let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
        let arguments = cmdline.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        guard arguments.first.map({ ($0 as NSString).lastPathComponent == "dnsmasq" }) == true,
              arguments.contains("--pid-file=\(pidFile)") else { return nil }
        return pid
    }

    func ensureDnsmasq(_ spec: SwitchSpec, mtu: Int) async throws {
        if dnsmasqPID(vni: spec.vni) != nil { return }   // adopted: it re-reads the hosts file on SIGHUP
        try prepareStateDirectory()
        let hosts = path(vni: spec.vni, "hosts")
        if !FileManager.default.fileExists(atPath: hosts) {
            _ = FileManager.default.createFile(atPath: hosts, contents: nil)
            try setReadable(hosts)
        }
        let arguments = DataPlanePlan.dnsmasqArguments(spec, mtu: mtu, hostsFile: hosts, leaseFile: path(vni: spec.vni, "leases"),
                                                       pidFile: path(vni: spec.vni, "pid"), logFile: path(vni: spec.vni, "log"))
        // dnsmasq daemonizes: the command returns once the daemon has bound its socket and written the pid file.
        let outcome = await AgentCommand.run(tools.dnsmasq, arguments, what: "dnsmasq for \(spec.bridge)", timeout: settings.commandTimeout)
        guard outcome.succeeded, dnsmasqPID(vni: spec.vni) != nil else {
            throw DozeError(.unavailable, "\(outcome.error ?? "dnsmasq for \(spec.bridge) wrote no pid file"): \(outcome.output)")
        }
        log.info("dnsmasq started", metadata: ["doze/vni": "\(spec.vni)", "doze/pid": "\(dnsmasqPID(vni: spec.vni) ?? 0)"])
    }

    func stopDnsmasq(vni: Int) async {
        guard let pid = dnsmasqPID(vni: vni) else { return }
        kill(pid, SIGTERM)
        for _ in 0..<40 where Self.isRunning(pid) { try? await Task.sleep(for: .milliseconds(50)) }
        if Self.isRunning(pid) { kill(pid, SIGKILL) }
    }

    /// Alive and not a zombie: the daemon's parent is whoever reaps orphans, which may take its time (kvm.md §5).
    static func isRunning(_ pid: pid_t) -> Bool {
        guard kill(pid, 0) == 0 else { return false }
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/stat") else { return false }
        let stat = String(decoding: data, as: UTF8.self)
        guard let close = stat.lastIndex(of: ")") else { return true }
        return stat[stat.index(after: close)...].split(separator: " ").first != "Z"
    }

    func prepareStateDirectory() throws {
        // dnsmasq drops to an unprivileged user and re-reads the hosts file as that user: the directory must be searchable.
        try FileManager.default.createDirectory(atPath: settings.stateDirectory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o755])
    }

    func setReadable(_ file: String) throws {
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: file)
    }

    // MARK: - Running commands

    func enableForwarding() throws {
        let file = "/proc/sys/net/ipv4/ip_forward"
        if (try? String(contentsOfFile: file, encoding: .utf8))?.hasPrefix("1") == true { return }
        guard let handle = FileHandle(forWritingAtPath: file) else { throw DozeError(.unavailable, "cannot write \(file)") }
        defer { try? handle.close() }
        try handle.write(contentsOf: Data("1\n".utf8))
    }

    func observeLinks() async throws -> [ObservedLink] {
        try DataPlanePlan.parseLinks(json: Data(try await output(tools.ip, ["-j", "-d", "addr", "show"]).utf8))
    }

    /// What a read-only command printed (up to 4 MiB), or an error.
    func output(_ executable: String, _ arguments: [String]) async throws -> String {
        let what = ([(executable as NSString).lastPathComponent] + arguments).joined(separator: " ")
        let outcome = await AgentCommand.run(executable, arguments, what: what, timeout: settings.commandTimeout, outputLimit: 4 << 20)
        guard outcome.succeeded else { throw DozeError(.unavailable, "\(outcome.error ?? what): \(outcome.output)") }
        return outcome.output
    }

    /// Runs `commands` in order; the first failure stops it.
    func run(_ commands: [DataPlanePlan.Command]) async throws {
        for command in commands {
            let (executable, prefix): (String, [String]) = switch command.tool {
            case .ip: (tools.ip, [])
            case .nft: (tools.nft, [])
            case .arping: (tools.arping, tools.arpingIsBusybox ? ["arping"] : [])
            }
            let outcome = await AgentCommand.run(executable, prefix + command.arguments, what: "\(command.tool.rawValue) \(command.arguments.joined(separator: " "))",
                                                 timeout: settings.commandTimeout, input: command.input)
            if !outcome.succeeded, command.tool == .arping {
                // The binding works without it; the underlay only learns the new MAC later (its ARP entry expires).
                log.warning("gratuitous ARP failed", metadata: ["doze/error": "\(outcome.error ?? "")"])
                continue
            }
            guard outcome.succeeded else {
                throw DozeError(.unavailable, "\(outcome.error ?? "\(command)"): \(outcome.output.trimmingCharacters(in: .whitespacesAndNewlines))")
            }
            log.debug("data plane", metadata: ["doze/command": "\(command.tool.rawValue) \(command.arguments.joined(separator: " "))"])
        }
    }
}
