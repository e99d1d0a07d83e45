import ArgumentParser
import ClusterCore
import ClusterTransport
import ClusterWire
import Foundation
import NIOCore
import NIOHTTP1

// `doze vm migrate`, `doze migration …` and `doze host …`: moving VMs between hosts through the bootstrap's
// native API (`/v1/migrations`, `/v1/hosts`).

extension BootstrapClient {
    /// A host named by its id, a unique prefix of it, or its controller's HOST:PORT.
    func resolveHost(_ name: String) async throws -> HostEntry {
        // A whole id needs no lookup (the server refuses an unknown one).
        if UUID(uuidString: name) != nil {
            return HostEntry(id: name, address: .unknown, groupManagerId: "", draining: false, vms: [], vcpus: 0, vcpusRequested: 0,
                             memoryMiB: 0, memoryMiBRequested: 0, migrations: 0)
        }
        let hosts = try decode(HostList.self, try await call(.GET, "/v1/hosts")).hosts
        if let exact = hosts.first(where: { $0.id == name || "\($0.address.address):\($0.address.port)" == name }) { return exact }
        let matches = hosts.filter { $0.id.hasPrefix(name) }
        if matches.count == 1 { return matches[0] }
        let known = hosts.map { "\($0.id.prefix(8)) (\($0.address.shown))" }.joined(separator: ", ")
        throw ClientError(matches.isEmpty ? "no local controller '\(name)' in the cluster; known: \(known)"
                                          : "'\(name)' names \(matches.count) local controllers; give more of the id")
    }

    /// Follows a migration until it is final or `timeout` passes; a live progress line on a terminal.
    func follow(_ id: String, json: Bool, timeout: Double) async throws -> MigrationRecord {
        let live = !json && isatty(STDOUT_FILENO) != 0
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = start + .milliseconds(Int64(min(max(timeout, 0), 1e9) * 1000))
        var last: MigrationRecord?
        var shown = 0
        while clock.now < deadline {
            do {
                // On a terminal, poll for progress; otherwise let the server answer when the migration ends.
                let path = live ? "/v1/migrations/\(BootstrapClient.segment(id))"
                                : "/v1/migrations/\(BootstrapClient.segment(id))?wait=\(Int(min(60, max(1, (deadline - clock.now).components.seconds))))"
                let record = try decode(MigrationRecord.self, try await call(.GET, path, timeout: .seconds(90)))
                last = record
                if live {
                    let line = MigrationView.progressLine(record)
                    print("\r" + line + String(repeating: " ", count: max(0, shown - line.count)), terminator: "")
                    fflush(nil)
                    shown = line.count
                }
                if record.state.isFinal { break }
                if live { try await Task.sleep(for: .milliseconds(200)) }
            } catch let error as ClientError where error.isTransient {
                try await Task.sleep(for: .milliseconds(250))
            }
        }
        if shown > 0 { print("") }
        guard let last else { throw ClientError("no news of migration \(id) within \(Int(timeout)) s") }
        return last
    }
}

extension HostEntry {
    /// `ID (HOST:PORT)`, or the id alone when the address is not known here.
    var named: String { address.port > 0 ? "\(id) (\(address.shown))" : id }
}

enum MigrationView {
    static func mib(_ bytes: UInt64) -> String { String(format: "%.1f", Double(bytes) / 1_048_576) }

    static func progressLine(_ record: MigrationRecord) -> String {
        var parts = ["migration \(record.id.prefix(8))", record.vm, "\(record.source.address.shown) -> \(record.destination.address.shown)",
                     record.mode, record.state.rawValue]
        if let progress = record.progress, progress.dataTotal > 0 {
            let done = progress.dataTotal > 0 ? min(100, Int(Double(progress.dataProcessed) * 100 / Double(progress.dataTotal))) : 0
            parts.append("\(done)%  \(mib(progress.dataProcessed))/\(mib(progress.dataTotal)) MiB")
            if progress.memoryBytesPerSecond > 0 { parts.append("\(mib(progress.memoryBytesPerSecond)) MiB/s") }
            if progress.iteration > 0 { parts.append("pass \(progress.iteration)") }
        }
        let elapsed = record.durationMs.map { Double($0) / 1000 }
            ?? max(0, Double(Int64(Date().timeIntervalSince1970 * 1000) - record.startedAt) / 1000)
        parts.append(String(format: "%.1f s", elapsed))
        return parts.joined(separator: "  ")
    }

    static func details(_ record: MigrationRecord) -> String {
        var lines: [(String, String)] = [
            ("migration", record.id), ("vm", record.vm), ("state", record.state.rawValue), ("mode", record.mode),
            ("from", "\(record.source.localControllerId)  \(record.source.address.shown)"),
            ("to", "\(record.destination.localControllerId)  \(record.destination.address.shown)"),
        ]
        if let duration = record.durationMs { lines.append(("took", String(format: "%.3f s", Double(duration) / 1000))) }
        if let progress = record.progress {
            if progress.elapsedMs > 0 { lines.append((record.mode == "live" ? "libvirt job" : "save+restore", "\(progress.elapsedMs) ms")) }
            if progress.dataTotal > 0 {
                let processed = progress.dataTotal < 1 << 20
                    ? "\(progress.dataProcessed) of \(progress.dataTotal) bytes"
                    : "\(mib(progress.dataProcessed)) of \(mib(progress.dataTotal)) MiB, \(mib(progress.dataRemaining)) MiB left"
                lines.append(("data", processed))
            }
            if let downtime = progress.downtimeMs { lines.append((record.state == .completed ? "downtime" : "expected downtime", "\(downtime) ms")) }
        }
        if let drain = record.drain { lines.append(("drain of", drain)) }
        if let error = record.error { lines.append(("error", error)) }
        return keyValueLines(lines)
    }

    static func table(_ records: [MigrationRecord]) -> String {
        var table = TextTable("MIGRATION", "VM", "STATE", "MODE", "FROM", "TO", "TOOK", "DOWNTIME", "ERROR")
        for record in records {
            table.add([String(record.id.prefix(8)), record.vm, record.state.rawValue, record.mode,
                       record.source.address.shown, record.destination.address.shown,
                       record.durationMs.map { String(format: "%.2f s", Double($0) / 1000) } ?? "-",
                       record.progress?.downtimeMs.map { "\($0) ms" } ?? "-", record.error ?? ""])
        }
        return table.render()
    }
}

/// Tuning shared by `vm migrate` and `host drain`.
struct MigrationTuning: ParsableArguments {
    @Option(help: "auto (live where the hosts can, else save/restore), live, or offline.")
    var mode: String?

    @Option(help: "Bandwidth limit in MiB/s (default: unlimited).")
    var bandwidth: UInt64?

    @Option(help: "Longest pause the guest may see at the switch-over, in milliseconds.")
    var maxDowntime: UInt64?

    @Option(help: "How the migration converges: auto-converge (default), post-copy, or none.")
    var convergence: String?

    @Option(help: "With post-copy: seconds of pre-copy before switching.")
    var postCopyAfter: Double?

    @Flag(help: "Copy the VM's disks too (hosts that share no storage).")
    var copyStorage = false

    func validate() throws {
        if let mode, !MigrationOptions.modes.contains(mode) {
            throw ValidationError("--mode must be one of \(MigrationOptions.modes.joined(separator: ", "))")
        }
        if let convergence, MigrationConvergence(rawValue: convergence) == nil {
            throw ValidationError("--convergence must be one of \(MigrationConvergence.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    var options: MigrationOptions {
        MigrationOptions(mode: mode, bandwidthMiBs: bandwidth, maxDowntimeMs: maxDowntime,
                         convergence: convergence.flatMap(MigrationConvergence.init(rawValue:)), postCopyAfterSeconds: postCopyAfter,
                         copyStorage: copyStorage ? true : nil)
    }
}

extension VMCommand {
    struct Migrate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move a running VM to another host: live between libvirt daemons, by save and restore between test-driver hosts.")

        @Argument(help: "The VM's id (its name).")
        var vm: String

        @Option(help: "Destination local controller: its id, a unique prefix of it, or its HOST:PORT.")
        var to: String

        @Flag(help: "Wait for the migration to end, with progress on a terminal; exit 1 unless it completed.")
        var wait = false

        @Option(help: "Seconds --wait waits at most.")
        var timeout: Double = 600

        @OptionGroup var tuning: MigrationTuning
        @OptionGroup var client: ClientOptions

        func run() async throws {
            try await reportingFailures {
                let api = try client.client()
                let destination = try await api.resolveHost(to)
                let raw = try await api.call(.POST, "/v1/migrations",
                                             body: MigrationSubmission(vm: vm, to: destination.id, options: tuning.options), timeout: .seconds(60))
                var record = try api.decode(MigrationRecord.self, raw)
                if wait { record = try await api.follow(record.id, json: client.json, timeout: timeout) }
                if client.json {
                    print(String(decoding: try WireCoding.encoder().encode(record), as: UTF8.self))
                } else if wait {
                    print(MigrationView.details(record))
                } else {
                    print("migration \(record.id) of \(record.vm) to \(record.destination.address.shown): \(record.state.rawValue) (\(record.mode))")
                    print("follow: doze migration show \(record.id) --wait     abort: doze migration abort \(record.id)")
                }
                if wait && record.state != .completed {
                    printError(record.state.isFinal ? "migration \(record.state.rawValue): \(record.error ?? "")"
                                                    : "still \(record.state.rawValue) after \(Int(timeout)) s")
                    throw ExitCode.failure
                }
            }
        }
    }
}

struct MigrationCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migration", abstract: "List, follow and abort VM migrations.",
        subcommands: [List.self, Show.self, Abort.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Migrations of the last hour, newest first.")
        @OptionGroup var client: ClientOptions

        func run() async throws {
            try await reportingFailures {
                let api = try client.client()
                let raw = try await api.call(.GET, "/v1/migrations")
                if client.json { print(String(buffer: raw)); return }
                let list = try api.decode(MigrationList.self, raw).migrations
                print(list.isEmpty ? "no migrations in the last hour" : MigrationView.table(list))
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One migration: state, progress, downtime, error.")
        @Argument(help: "The migration id.")
        var id: String
        @Flag(help: "Wait for it to end, with progress on a terminal.")
        var wait = false
        @Option(help: "Seconds --wait waits at most.")
        var timeout: Double = 600
        @OptionGroup var client: ClientOptions

        func run() async throws {
            try await reportingFailures {
                let api = try client.client()
                let record = wait ? try await api.follow(id, json: client.json, timeout: timeout)
                                  : try api.decode(MigrationRecord.self, try await api.call(.GET, "/v1/migrations/\(BootstrapClient.segment(id))"))
                if client.json { print(String(decoding: try WireCoding.encoder().encode(record), as: UTF8.self)); return }
                print(MigrationView.details(record))
            }
        }
    }

    struct Abort: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Abort a migration: the VM keeps running on its source.")
        @Argument(help: "The migration id.")
        var id: String
        @OptionGroup var client: ClientOptions

        func run() async throws {
            try await reportingFailures {
                let api = try client.client()
                let raw = try await api.call(.DELETE, "/v1/migrations/\(BootstrapClient.segment(id))", timeout: .seconds(60))
                if client.json { print(String(buffer: raw)); return }
                print(MigrationView.details(try api.decode(MigrationRecord.self, raw)))
            }
        }
    }
}

struct HostCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "host", abstract: "List hosts (local controllers), drain them of VMs, and undrain them.",
        subcommands: [List.self, Drain.self, Undrain.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every local controller: load, VMs, drained or not.")
        @OptionGroup var client: ClientOptions

        func run() async throws {
            try await reportingFailures {
                let api = try client.client()
                let raw = try await api.call(.GET, "/v1/hosts")
                if client.json { print(String(buffer: raw)); return }
                var table = TextTable("HOST", "ADDRESS", "VCPUS", "MEMORY MiB", "CPU USE", "MEM USE", "VMS", "MIGRATIONS", "SCHEDULING")
                for entry in try api.decode(HostList.self, raw).hosts {
                    let use = { (fraction: Double?) in fraction.map { "\(Int(($0 * 100).rounded()))%" } ?? "-" }
                    table.add([String(entry.id.prefix(8)), entry.address.shown, "\(Int(entry.vcpusRequested))/\(Int(entry.vcpus))",
                               "\(Int(entry.memoryMiBRequested))/\(Int(entry.memoryMiB))", use(entry.cpuFraction), use(entry.memoryFraction),
                               "\(entry.vms.count)", "\(entry.migrations)", HostCommand.scheduling(entry)])
                }
                print(table.render())
            }
        }
    }

    /// SLEEPING, WAKING and POWERING OFF (energy saving) before drained / open.
    static func scheduling(_ entry: HostEntry) -> String {
        switch entry.power {
        case "sleeping": return "SLEEPING"
        case "waking": return "WAKING"
        case "powering-off": return "POWERING OFF"
        default: return entry.draining ? "drained" : "open"
        }
    }

    struct Drain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Take no new VMs on a host and live-migrate every running VM off it (placement picks the targets).")
        @Argument(help: "The host: its controller id, a unique prefix of it, or HOST:PORT.")
        var host: String
        @Flag(help: "Wait until every migration of the drain has ended.")
        var wait = false
        @Option(help: "Seconds --wait waits at most.")
        var timeout: Double = 1800
        @OptionGroup var tuning: MigrationTuning
        @OptionGroup var client: ClientOptions

        func run() async throws {
            try await reportingFailures {
                let api = try client.client()
                let target = try await api.resolveHost(host)
                let raw = try await api.call(.POST, "/v1/hosts/\(BootstrapClient.segment(target.id))/drain", body: tuning.options,
                                             timeout: .seconds(120))
                let report = try api.decode(DrainReport.self, raw)
                var outcomes = report.migrations
                if wait {
                    var finished: [MigrationRecord] = []
                    for migration in report.migrations { finished.append(try await api.follow(migration.id, json: true, timeout: timeout)) }
                    outcomes = finished
                }
                if client.json {
                    var final = report
                    final.migrations = outcomes
                    print(String(decoding: try WireCoding.encoder().encode(final), as: UTF8.self))
                } else {
                    print("host \(target.named) is drained: it takes no new VMs")
                    if !outcomes.isEmpty { print(MigrationView.table(outcomes)) }
                    for (vm, why) in report.unplaced.sorted(by: { $0.key < $1.key }) { print("not moved: \(vm): \(why)") }
                    if outcomes.isEmpty && report.unplaced.isEmpty { print("no VMs to move") }
                }
                if wait && (outcomes.contains { $0.state != .completed } || !report.unplaced.isEmpty) {
                    printError("the host still holds VMs: \(outcomes.filter { $0.state != .completed }.count) migrations did not complete, "
                               + "\(report.unplaced.count) VMs were not moved")
                    throw ExitCode.failure
                }
            }
        }
    }

    struct Undrain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Let a drained host take new VMs again.")
        @Argument(help: "The host: its controller id, a unique prefix of it, or HOST:PORT.")
        var host: String
        @OptionGroup var client: ClientOptions

        func run() async throws {
            try await reportingFailures {
                let api = try client.client()
                let target = try await api.resolveHost(host)
                let raw = try await api.call(.POST, "/v1/hosts/\(BootstrapClient.segment(target.id))/undrain")
                if client.json { print(String(buffer: raw)); return }
                print("host \(target.named) takes new VMs again")
            }
        }
    }
}
