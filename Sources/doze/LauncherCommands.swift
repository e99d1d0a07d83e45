import ArgumentParser
import ClusterCore
import ClusterLauncher
import ClusterNode
import ClusterTransport
import ClusterWire
import Foundation
import NIOCore
import NIOHTTP1

/// This executable's own path, to start the nodes of a topology with the same binary.
func selfExecutable() -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
}

struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster", abstract: "Start or stop every node of a topology file on this machine.",
        subcommands: [Up.self, Down.self])

    struct Up: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start every node of TOPOLOGY as its own process.")

        @Argument(help: "Topology file, e.g. topology/local.yaml.")
        var topology: String

        @Option(help: "Run directory for logs, pids and node state (default: the file's run_dir, else .state/cluster-NAME).")
        var runDir: String?

        @Flag(help: "Return once every node answers, leaving them running (stop with `doze cluster down`).")
        var detach = false

        @Option(help: "Log format of every node: text or json.")
        var logFormat: LogFormat?

        @Option(help: "Seconds every node has to answer /health before the start counts as failed (large topologies need more).")
        var readyWithin: Double = 30

        func run() async throws {
            var launcher: ClusterLauncher
            do { launcher = try ClusterLauncher(topologyFile: topology, runDirectory: runDir, binary: selfExecutable()) } catch {
                throw ValidationError("\(error)")
            }
            launcher.logFormat = logFormat?.rawValue
            let nodes: [ClusterLauncher.Launched]
            do { nodes = try await launcher.up(readyWithin: .milliseconds(Int64(min(max(readyWithin, 0), 1e9) * 1000))) } catch {
                print("cluster up failed: \(error)")
                throw ExitCode.failure
            }
            print("cluster '\(launcher.topology.name)' is up (run directory \(launcher.runDirectory))")
            if nodes.contains(where: { $0.namespace != nil }) {
                print(pad("NAME", 14) + pad("ROLE", 11) + pad("ADDRESS", 18) + pad("PID", 9) + pad("NAMESPACE", 22) + "HYPERVISOR")
                for node in nodes {
                    print(pad(node.name, 14) + pad(node.role, 11) + pad(node.listen, 18) + pad("\(node.pid)", 9)
                          + pad(node.namespace ?? "(root)", 22) + (node.hypervisor ?? "-"))
                }
                if let client = launcher.topology.network?.clientListen {
                    print("logs: \(launcher.runDirectory)/NAME.log; reach the cluster with --bootstrap \(client)")
                }
                if let etcd = launcher.topology.etcdLayout(runDirectory: launcher.runDirectory), let firstMember = etcd.members.first, let ns = firstMember.namespace {
                    print("etcd: ip netns exec \(ns) etcdctl --endpoints=\(etcd.endpoints) endpoint health; prefix \(etcd.prefix)")
                }
            } else {
                print(pad("NAME", 14) + pad("ROLE", 11) + pad("ADDRESS", 18) + pad("PID", 9) + "LOG")
                for node in nodes {
                    print(pad(node.name, 14) + pad(node.role, 11) + pad(node.listen, 18) + pad("\(node.pid)", 9) + node.log)
                }
            }
            print("layout for scripts (restart commands, PIDs, namespaces): \(launcher.layoutFile)")
            print("admin token: \(launcher.adminTokenFile) (the doze CLI sends it; curl: -H \"Authorization: Bearer $(cat \(launcher.adminTokenFile))\")")
            fflush(nil)
            if detach {
                print("stop with: doze cluster down \(topology)")
                return
            }
            print("Ctrl-C stops the cluster.")
            fflush(nil)
            await ClusterLauncher.waitForSignal()
            print(Self.describe(await launcher.down()))
        }

        static func describe(_ stopped: ClusterLauncher.Stopped) -> String {
            var parts = ["\(stopped.nodes) nodes"]
            if stopped.guests > 0 { parts.append("\(stopped.guests) guests") }
            if stopped.daemons > 0 { parts.append("\(stopped.daemons) libvirt daemons") }
            if stopped.etcdMembers > 0 { parts.append("\(stopped.etcdMembers) etcd members") }
            if stopped.namespaces > 0 { parts.append("\(stopped.namespaces) network namespaces") }
            if stopped.mountPoints > 0 { parts.append("\(stopped.mountPoints) mount points") }
            return "stopped " + parts.joined(separator: ", ")
        }
    }

    struct Down: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop every node started by `doze cluster up`.")

        @Argument(help: "The topology file that was brought up.")
        var topology: String

        @Option(help: "Run directory, if `up` was given one.")
        var runDir: String?

        func run() async throws {
            let launcher: ClusterLauncher
            do { launcher = try ClusterLauncher(topologyFile: topology, runDirectory: runDir, binary: selfExecutable()) } catch {
                throw ValidationError("\(error)")
            }
            if launcher.topology.network != nil, geteuid() != 0 {
                print("cluster down failed: topology '\(launcher.topology.name)' uses network namespaces: run `doze cluster down` as root")
                throw ExitCode.failure
            }
            let stopped = await launcher.down()
            print(stopped.total == 0 ? "nothing of '\(launcher.topology.name)' was running"
                  : Up.describe(stopped) + " of '\(launcher.topology.name)'")
        }
    }
}

func pad(_ text: String, _ width: Int) -> String { text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count) }

struct HierarchyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hierarchy", abstract: "Print the cluster's tree: leader, group managers, local controllers, VMs, capacity.")

    /// `--bootstrap` (default: DOZE_BOOTSTRAP, else 127.0.0.1:5000); `--json` prints Snooze's getCompleteHierarchy.
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let endpoint = try options.endpoint()
        let (status, body) : (Int, ByteBuffer)
        do {
            (status, body) = try await PeerClient(timeout: .seconds(5)).send(.GET, endpoint, "/bootstrap?getCompleteHierarchy")
        } catch {
            print("cannot reach the bootstrap at \(endpoint): \(error)")
            throw ExitCode.failure
        }
        guard status == 200 else {
            print("the bootstrap at \(endpoint) answered \(status): \(String(buffer: body))")
            throw ExitCode.failure
        }
        if options.json {
            print(String(buffer: body))
            return
        }
        let tree = try JSONDecoder().decode(GroupLeaderRepositoryInformation.self, from: Data(body.readableBytesView))
        print(Self.render(tree))
    }

    static func render(_ tree: GroupLeaderRepositoryInformation) -> String {
        func gib(_ kib: Double) -> String { String(format: "%.1f", kib / 1_048_576) }
        var lines: [String] = []
        if let leader = tree.groupLeader {
            lines.append("LEADER  \(leader.id)  \(leader.listenSettings.controlDataAddress.address):\(leader.listenSettings.controlDataAddress.port)  term \(leader.term)")
        }
        for gm in tree.groupManagerDescriptions {
            let lcs = gm.localControllers.values.sorted { $0.id < $1.id }
            let vms = lcs.reduce(0) { $0 + $1.virtualMachineMetaData.count }
            lines.append("  GM  \(gm.id)  \(gm.listenSettings.controlDataAddress.address):\(gm.listenSettings.controlDataAddress.port)  controllers \(lcs.count)  vms \(vms)")
            for lc in lcs {
                // From the network: read through ResourceVector, which tolerates short arrays.
                let tv = ResourceVector(snoozeArray: lc.totalCapacity), uv = ResourceVector(snoozeArray: lc.usedCapacity)
                let total = [tv.vcpus, tv.memoryKiB], used = [uv.vcpus, uv.memoryKiB]
                lines.append("    LC  \(lc.id)  \(lc.controlDataAddress.address):\(lc.controlDataAddress.port)  "
                             + "vcpus \(Int(used[0]))/\(Int(total[0]))  mem \(gib(used[1]))/\(gib(total[1])) GiB  vms \(lc.virtualMachineMetaData.count)"
                             + (lc.virtualMachineMetaData.isEmpty ? "" : " (\(lc.virtualMachineMetaData.keys.sorted().joined(separator: ", ")))"))
            }
        }
        if tree.groupManagerDescriptions.isEmpty { lines.append("  (no group manager has joined yet)") }
        return lines.joined(separator: "\n")
    }
}
