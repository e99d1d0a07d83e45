import ArgumentParser
import ClusterCore
import ClusterNode
import Foundation
import LibvirtHypervisor
import Logging

@main
struct Doze: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doze",
        abstract: "A cluster manager for virtual machines on libvirt/KVM.",
        subcommands: [LocalControllerCommand.self, GroupManagerCommand.self, BootstrapCommand.self, ClusterCommand.self,
                      HierarchyCommand.self, SubmitCommand.self, VMCommand.self, MigrationCommand.self, HostCommand.self, RebalanceCommand.self, AppCommand.self,
                      NetworkCommand.self, FloatingIPCommand.self, TokenCommand.self, TenantCommand.self, WhoAmICommand.self, EventsCommand.self])
}

/// Options every role shares.
struct CommonOptions: ParsableArguments {
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical (or LOG_LEVEL).")
    var logLevel: String?

    @Option(help: "Log format: text, or json (one object per line: time, level, label, message, metadata).")
    var logFormat: LogFormat = .text

    func bootstrapLogging() -> Logger {
        let level = (logLevel ?? ProcessInfo.processInfo.environment["LOG_LEVEL"]).flatMap(Logger.Level.init(rawValue:)) ?? .info
        logFormat.bootstrap(level: level)
        return Logger(label: "doze")
    }
}

/// Parses `HOST:PORT`.
func parseListen(_ text: String) throws -> (String, Int) {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
        throw ValidationError("--listen must be HOST:PORT, got '\(text)'")
    }
    let host = String(text[..<colon])
    guard !host.isEmpty else { throw ValidationError("--listen must name a host, got '\(text)'") }
    return (host, port)
}

struct LocalControllerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lc",
        abstract: "Run a local controller: manages the VMs of one hypervisor host.")

    @Option(help: "Address of the HTTP API (port 0 picks a free port).")
    var listen = "127.0.0.1:5010"

    @Option(help: "libvirt URI: test:///ABSOLUTE/host.xml, test:///default, qemu:///system, qemu+tcp://HOST/system.")
    var hypervisor: String

    @Option(help: "Directory for the controller's state (configuration, metrics, test-host journal).")
    var stateDir: String

    @Option(help: "Directory that POST /vm?xmlName=FILE reads domain XML files from.")
    var xmlDir: String?

    @Option(help: "An extra directory VM disks, kernels and filesystems may use (repeatable).")
    var diskDir: [String] = []

    @Option(help: "A directory volume pools and the image pool may be created in (repeatable). Without one, pools may be anywhere outside the system trees (/etc, /usr, /proc, /var/lib/libvirt, …) and the state directory.")
    var storageRoot: [String] = []

    @Option(help: "Let the quota's cpu_max exceed the host's CPUs by this ratio (e.g. 4 for 4 vCPUs per CPU).")
    var cpuOvercommit: Double?

    @Option(help: "Let the quota's memory_max_mb exceed the host's memory by this ratio (e.g. 1.5).")
    var memoryOvercommit: Double?

    @Option(help: "Accelerator VMs run under: auto (KVM if usable, else TCG), kvm or tcg. Sets the domain type (kvm or qemu).")
    var accelerator: String = "auto"

    @Option(help: "libvirt URI other hosts' daemons reach this host's daemon at, for peer-to-peer migration (e.g. qemu+tcp://10.0.0.5/system).")
    var migrationURI: String?

    @Option(help: "VM networks (seed 004) on this host: linux (bridges, VXLAN, nftables, dnsmasq; root), none (books only), or auto (linux on a real hypervisor where it can run, else none).")
    var dataPlane: String = "auto"

    @Option(help: "The interface VXLAN and floating IPs use (default: the one holding the --listen address).")
    var underlay: String?

    @Option(help: "Seconds between metrics samples.")
    var sampleInterval: Double = 60

    @Option(help: "Seconds between readings of every running VM's use (GET /v1/vms/NAME/usage).")
    var usageInterval: Double = 5

    @Option(help: "How VM use is smoothed: average:SECONDS (the mean over a window) or ewma:ALPHA (0 < ALPHA <= 1).")
    var usageEstimator: String = "average:30"

    @Option(help: "Largest accepted request body, in bytes.")
    var maxBodyBytes: Int = 1 << 20

    @OptionGroup var common: CommonOptions
    @OptionGroup var clusterOptions: ClusterOptions

    func validate() throws {
        _ = try parseListen(listen)
        guard sampleInterval > 0 else { throw ValidationError("--sample-interval must be > 0") }
        guard usageInterval.isFinite, usageInterval > 0, usageInterval <= 3600 else {
            throw ValidationError("--usage-interval must be > 0 and at most 3600 seconds, got \(usageInterval)")
        }
        do { _ = try UsageEstimator.parse(usageEstimator) } catch { throw ValidationError("--usage-estimator: \(error.message)") }
        guard maxBodyBytes > 0 else { throw ValidationError("--max-body-bytes must be > 0") }
        for (flag, ratio) in [("--cpu-overcommit", cpuOvercommit), ("--memory-overcommit", memoryOvercommit)] {
            if let ratio, !(ratio >= 1 && ratio <= 100) { throw ValidationError("\(flag) must be a ratio from 1 to 100, got \(ratio)") }
        }
        guard LocalControllerSettings.Accelerator(rawValue: accelerator) != nil else {
            throw ValidationError("--accelerator must be auto, kvm or tcg, got '\(accelerator)'")
        }
        guard ["auto", "linux", "none"].contains(dataPlane) else {
            throw ValidationError("--data-plane must be auto, linux or none, got '\(dataPlane)'")
        }
        if hypervisor.hasPrefix("test://"), hypervisor != "test:///default", !hypervisor.hasPrefix("test:///") {
            throw ValidationError("a test-driver host file needs an absolute path: test:///ABSOLUTE/PATH.xml")
        }
    }

    /// `--data-plane`: `auto` picks linux on a real hypervisor when this host can run it (root, the tools, an
    /// underlay), and says at start which it took and why; `linux` refuses to start without it.
    func makeDataPlane(host: String, stateDirectory: String, log: Logger) throws -> (any HostNetworkPlane)? {
        guard dataPlane != "none", dataPlane == "linux" || !hypervisor.hasPrefix("test:") else { return nil }
        guard let device = underlay ?? HostDataPlane.interface(holding: host) else {
            if dataPlane == "linux" { throw ValidationError("--data-plane linux: no interface holds \(host); give --underlay DEV") }
            log.notice("VM networks keep the books only here: no interface holds the listen address (give --underlay DEV)")
            return nil
        }
        var planeSettings = HostDataPlane.Settings(underlay: device, stateDirectory: stateDirectory + "/dataplane")
        planeSettings.logger = log
        do {
            let plane = try HostDataPlane.make(mode: .linux, settings: planeSettings)
            log.info("VM networks: linux data plane", metadata: ["doze/underlay": "\(device)"])
            return plane
        } catch {
            if dataPlane == "linux" { throw ValidationError("\(error)") }
            log.notice("VM networks keep the books only here", metadata: ["reason": "\(error)"])
            return nil
        }
    }

    func run() async throws {
        let log = common.bootstrapLogging()
        let (host, port) = try parseListen(listen)
        func absolute(_ path: String) -> String {
            path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        }
        var settings = LocalControllerSettings(hypervisorURI: hypervisor, stateDirectory: absolute(stateDir), openHypervisor: LibvirtHost.factory)
        settings.host = host
        settings.port = port
        settings.xmlDirectory = xmlDir.map(absolute)
        settings.diskDirectories = diskDir.map(absolute)
        settings.storageRoots = storageRoot.map(absolute)
        settings.httpLimits = try clusterOptions.httpLimits()
        settings.cpuOvercommit = cpuOvercommit
        settings.memoryOvercommit = memoryOvercommit
        settings.sampleInterval = .milliseconds(Int64(sampleInterval * 1000))
        settings.usageInterval = .milliseconds(max(1, Int64(usageInterval * 1000)))
        settings.usageEstimator = try UsageEstimator.parse(usageEstimator)
        settings.maxBodyBytes = maxBodyBytes
        settings.accelerator = LocalControllerSettings.Accelerator(rawValue: accelerator)!
        settings.migrationURI = migrationURI
        settings.logger = log
        settings.dataPlane = try makeDataPlane(host: host, stateDirectory: settings.stateDirectory, log: log)
        let stateDirectory = settings.stateDirectory
        do {
            let cluster = try clusterOptions.settings(required: false)
            try await HierarchyRuntime.runLocalController(settings: settings, cluster: cluster) { host, port in
                // A line for humans and scripts, and a file for tools that started us with port 0.
                print("doze lc listening on http://\(host):\(port)")
                fflush(nil)
                try? "\(host):\(port)\n".write(toFile: stateDirectory + "/listen.addr", atomically: true, encoding: .utf8)
            }
        } catch {
            log.critical("local controller stopped", metadata: ["error": "\(error)"])
            throw ExitCode.failure
        }
    }
}

extension LogFormat: ExpressibleByArgument {}
