import Foundation

// RUN/layout.json: what a running cluster is made of, for scripts (chaos, benchmarks) that kill, restart or
// partition one piece of it. Written by `up` once everything answers, removed by `down`. Snake-case keys.
//
// Each process comes with `command` (its argv inside its namespace) and `restart`, a shell line that starts it again
// the same way (same arguments, state and data dirs; log appended) in the background and writes its new PID to
// `pid_file`, where `down` looks for it. `pid` is the PID `up` started, stale after a restart.

struct ClusterLayoutFile: Codable, Sendable {
    struct Node: Codable, Sendable {
        var name: String
        var role: String
        var listen: String
        var namespace: String?
        /// The hub's end of a controller host's veth pair: `ip -n HUB link set LINK down` cuts the host off.
        var hubLink: String?
        var pid: Int32
        var pidFile: String
        var log: String
        var command: [String]
        var restart: String
    }
    struct Member: Codable, Sendable {
        var name: String
        var namespace: String?
        var hubLink: String?
        var clientUrl: String
        var peerUrl: String
        var pid: Int32
        var pidFile: String
        var dataDir: String
        var log: String
        var commandFile: String
        var command: [String]
        var restart: String
    }
    /// A controller host's hand-started libvirtd (network-namespace topologies).
    struct Daemon: Codable, Sendable {
        /// The controller's name (`host-a`).
        var name: String
        var namespace: String
        var directory: String
        var pidFile: String
        var socket: String
        /// Starts it again in a fresh private mount namespace (same tree, definitions kept) in the background and
        /// records the new subreaper in `records_file`; the daemon is up once `socket` exists.
        var restart: String
    }
    struct Etcd: Codable, Sendable {
        var endpoints: String
        var prefix: String
        var leaseTtlS: Int?
        var members: [Member]
    }

    var topology: String
    var topologyFile: String
    var runDirectory: String
    var hubNamespace: String?
    var clientListen: String?
    /// The inline `secret:`, for restarting nodes (they read it from DOZE_SECRET); mode 0600.
    var secretFile: String?
    var nodes: [Node]
    var daemons: [Daemon]?
    /// Where `down` finds what to stop besides the nodes (`daemon NAME PID`, `reaper NAME PID`, …): a script that
    /// restarts a daemon appends its new PIDs here.
    var recordsFile: String?
    var etcd: Etcd?
}

extension ClusterLauncher {
    public var layoutFile: String { runDirectory + "/layout.json" }
    /// Where an inline secret is kept for restarts; the nodes `up` starts get it in their environment.
    var inlineSecretFile: String { runDirectory + "/secret" }

    /// `ip netns exec NS ARGV >>LOG 2>&1 </dev/null & echo $! >PIDFILE`: `ip` execs the program, so `$!` is its PID.
    static func restartLine(_ argv: [String], namespace: String?, ip: String, log: String, pidFile: String, environment: String = "") -> String {
        let quote = Tool.quote
        let wrapped = (namespace.map { [ip, "netns", "exec", $0] } ?? []) + argv
        return environment + wrapped.map(quote).joined(separator: " ") + " >>\(quote(log)) 2>&1 </dev/null & echo $! >\(quote(pidFile))"
    }

    func writeLayoutFile(_ launched: [Launched], etcd: EtcdLayout?) throws {
        let network = topology.layout(runDirectory: runDirectory)
        let ip = Tool.find("ip") ?? "/usr/sbin/ip"
        var secretFile: String?
        var environment = ""
        if let secret = topology.secret, topology.secretFile == nil {
            _ = FileManager.default.createFile(atPath: inlineSecretFile, contents: Data(secret.utf8), attributes: [.posixPermissions: 0o600])
            secretFile = inlineSecretFile
            environment = "DOZE_SECRET=\"$(cat \(Tool.quote(inlineSecretFile)))\" "
        }
        let nodes = launched.filter { $0.role != "etcd" }.map { node in
            let pidFile = "\(pidDirectory)/\(node.name).pid"
            return ClusterLayoutFile.Node(
                name: node.name, role: node.role, listen: node.listen, namespace: node.namespace,
                hubLink: network?.bridged.first { $0.name == node.name }?.hubLink, pid: node.pid, pidFile: pidFile, log: node.log,
                command: node.command, restart: Self.restartLine(node.command, namespace: node.namespace, ip: ip, log: node.log, pidFile: pidFile,
                                                                 environment: node.role == "forwarder" ? "" : environment))
        }
        let members = etcd.map { etcd in
            etcd.members.map { member in
                let command = ((try? String(contentsOfFile: member.commandFile, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
                return ClusterLayoutFile.Member(
                    name: member.name, namespace: member.namespace, hubLink: member.hubLink, clientUrl: member.clientURL, peerUrl: member.peerURL,
                    pid: Self.readPid(member.pidFile) ?? 0, pidFile: member.pidFile, dataDir: member.dataDirectory, log: member.log,
                    commandFile: member.commandFile, command: command,
                    restart: Self.restartLine(command, namespace: member.namespace, ip: ip, log: member.log, pidFile: member.pidFile))
            }
        }
        let quote = Tool.quote
        let unshare = Tool.find("unshare") ?? "/usr/bin/unshare"
        let daemons = network?.hosts.compactMap { host -> ClusterLayoutFile.Daemon? in
            guard let dir = host.daemonDirectory else { return nil }
            let restart = [ip, "netns", "exec", host.namespace, unshare, "--mount", "--uts", "--propagation", "private", "/bin/sh", dir + "/start.sh"]
                .map(quote).joined(separator: " ") + " >>\(quote(dir + "/daemon.out")) 2>&1 </dev/null & echo \"reaper \(host.name) $!\" >>\(quote(recordFile))"
            return ClusterLayoutFile.Daemon(name: host.name, namespace: host.namespace, directory: dir, pidFile: dir + "/libvirtd.pid",
                                            socket: dir + "/run/libvirt-sock", restart: restart)
        }
        let file = ClusterLayoutFile(
            topology: topology.name, topologyFile: topologyFile, runDirectory: runDirectory, hubNamespace: network?.hubNamespace,
            clientListen: network?.clientListen, secretFile: secretFile, nodes: nodes,
            daemons: daemons?.isEmpty == false ? daemons : nil, recordsFile: network == nil ? nil : recordFile,
            etcd: etcd.map { ClusterLayoutFile.Etcd(endpoints: $0.endpoints, prefix: $0.prefix, leaseTtlS: $0.leaseTTLSeconds, members: members ?? []) })
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try (encoder.encode(file) + Data("\n".utf8)).write(to: URL(fileURLWithPath: layoutFile), options: .atomic)
    }
}
