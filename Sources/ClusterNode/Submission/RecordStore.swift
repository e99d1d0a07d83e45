import ClusterCore
import ClusterWire
import Foundation

/// Where the leader keeps what must outlive it: submission records, the IP pool and the kvm-apps. Whoever leads next reads
/// them back. The one-host backend is a directory shared by every group manager (the election directory);
/// the etcd backend keeps them under the cluster's prefix.
///
/// Writes may be queued (in order) and return at once; `flush` waits until every write made so far is stored and
/// throws if one failed, e.g. because this node no longer leads (the etcd store fences every write with the
/// leader key). Loads happen once per leadership, before the leader answers anything.
protocol ClusterRecordStore: Sendable {
    func saveTask(_ record: TaskRecord) throws
    func deleteTask(_ id: String) throws
    func loadTasks() async throws -> [TaskRecord]
    func saveIPPool(_ pool: IPPool) throws
    func loadIPPool() async throws -> IPPool?
    /// Every kvm-app, written whole (apps are few and change only on user requests).
    func saveApps(_ apps: [KVMAppRecord]) throws
    func loadApps() async throws -> [KVMAppRecord]
    /// Migrations, so that a new leader still answers for (and follows) those of the old one.
    func saveMigration(_ record: MigrationRecord) throws
    func deleteMigration(_ id: String) throws
    func loadMigrations() async throws -> [MigrationRecord]
    /// VM high availability's books (which VMs are where, which are being restarted), one entry per VM; nil removes it.
    func saveFailoverEntry(_ entry: FailoverEntry?, vm: String) throws
    func loadFailover() async throws -> [FailoverEntry]
    /// The hosts the energy saver put to sleep (their controllers are gone from the hierarchy), written whole.
    func saveSleepingHosts(_ hosts: [SleepingHost]) throws
    /// Seed 004's switches, their leases and the floating IPs (one document: they change together).
    func saveNetworks(_ book: NetworkBook) throws
    func loadNetworks() async throws -> NetworkBook?
    func loadSleepingHosts() async throws -> [SleepingHost]
    /// The events stream (`EventJournal`): stores one event and answers its revision. The directory store keeps
    /// the revision it is given (the journal counts: latest + 1); etcd answers the revision of the event's own key.
    /// Not queued: the journal shows an event only once it is stored.
    func appendEvent(_ event: ClusterEvent) async throws -> Int64
    /// Every kept event, and the newest revision dropped by compaction (0 if none).
    func loadEvents() async throws -> (events: [ClusterEvent], floor: Int64)
    /// Drops these events (the oldest) and records the new floor.
    func compactEvents(dropping dropped: [ClusterEvent], floor: Int64) throws
    /// Tenants and API tokens (token secrets only as hashes), written whole. Every group manager reads them.
    func saveAuth(_ book: AuthBook) throws
    func loadAuth() async throws -> AuthBook?
    func flush() async throws
}

/// A host asleep: what a new leader needs to wake it and to list it.
struct SleepingHost: Codable, Sendable, Equatable {
    var id: NodeID
    var address: Endpoint
    var manager: NodeID
    var vcpus: Int
    var memoryMiB: Int
}

/// `DIR/tasks/<id>.json`, `DIR/ippool.json`, `DIR/apps.json`, `DIR/sleeping.json`, `DIR/networks.json`, each replaced atomically (write, then rename).
/// No fsync: a killed leader loses nothing (the page cache survives the process); a host crash takes the
/// whole one-host cluster down with it anyway.
struct DirectoryRecordStore: ClusterRecordStore {
    let directory: String

    init(directory: String) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory + "/tasks", withIntermediateDirectories: true)
    }

    private func write(_ data: Data, to path: String) throws {
        let tmp = path + ".tmp"
        try data.write(to: URL(fileURLWithPath: tmp))
        guard rename(tmp, path) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    }

    private func taskPath(_ id: String) -> String { "\(directory)/tasks/\(id).json" }

    func saveTask(_ record: TaskRecord) throws {
        try write(try JSONEncoder().encode(record), to: taskPath(record.id))
    }

    func deleteTask(_ id: String) throws {
        try? FileManager.default.removeItem(atPath: taskPath(id))
    }

    func loadTasks() throws -> [TaskRecord] {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory + "/tasks")
        return names.filter { $0.hasSuffix(".json") }.compactMap { name in
            guard let data = FileManager.default.contents(atPath: "\(directory)/tasks/\(name)") else { return nil }
            return try? JSONDecoder().decode(TaskRecord.self, from: data)
        }
    }

    func saveIPPool(_ pool: IPPool) throws {
        try write(try JSONEncoder().encode(pool), to: directory + "/ippool.json")
    }

    func loadIPPool() throws -> IPPool? {
        guard let data = FileManager.default.contents(atPath: directory + "/ippool.json") else { return nil }
        return try JSONDecoder().decode(IPPool.self, from: data)
    }

    func saveApps(_ apps: [KVMAppRecord]) throws {
        try write(try JSONEncoder().encode(apps.sorted { $0.id < $1.id }), to: directory + "/apps.json")
    }

    func saveSleepingHosts(_ hosts: [SleepingHost]) throws {
        try write(try JSONEncoder().encode(hosts.sorted { $0.id < $1.id }), to: directory + "/sleeping.json")
    }

    func saveNetworks(_ book: NetworkBook) throws {
        try write(try JSONEncoder().encode(book), to: directory + "/networks.json")
    }

    func loadNetworks() throws -> NetworkBook? {
        guard let data = FileManager.default.contents(atPath: directory + "/networks.json") else { return nil }
        return try JSONDecoder().decode(NetworkBook.self, from: data)
    }

    func saveAuth(_ book: AuthBook) throws {
        try write(try JSONEncoder().encode(book), to: directory + "/auth.json")
        chmod(directory + "/auth.json", 0o600)
    }

    func loadAuth() throws -> AuthBook? {
        guard let data = FileManager.default.contents(atPath: directory + "/auth.json") else { return nil }
        return try JSONDecoder().decode(AuthBook.self, from: data)
    }

    func loadSleepingHosts() throws -> [SleepingHost] {
        guard let data = FileManager.default.contents(atPath: directory + "/sleeping.json") else { return [] }
        return try JSONDecoder().decode([SleepingHost].self, from: data)
    }

    func loadApps() throws -> [KVMAppRecord] {
        guard let data = FileManager.default.contents(atPath: directory + "/apps.json") else { return [] }
        return try JSONDecoder().decode([KVMAppRecord].self, from: data)
    }

    func saveMigration(_ record: MigrationRecord) throws {
        try FileManager.default.createDirectory(atPath: directory + "/migrations", withIntermediateDirectories: true)
        try write(try JSONEncoder().encode(record), to: "\(directory)/migrations/\(record.id).json")
    }

    func deleteMigration(_ id: String) throws {
        try? FileManager.default.removeItem(atPath: "\(directory)/migrations/\(id).json")
    }

    func loadMigrations() throws -> [MigrationRecord] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory + "/migrations")) ?? []
        return names.filter { $0.hasSuffix(".json") }.compactMap { name in
            FileManager.default.contents(atPath: "\(directory)/migrations/\(name)").flatMap { try? JSONDecoder().decode(MigrationRecord.self, from: $0) }
        }
    }

    /// `DIR/failover/<hex of the VM name>.json`: VM names come from hosts, so they are not trusted as file names.
    func saveFailoverEntry(_ entry: FailoverEntry?, vm: String) throws {
        let path = "\(directory)/failover/\(failoverKey(vm)).json"
        guard let entry else {
            try? FileManager.default.removeItem(atPath: path)
            return
        }
        try FileManager.default.createDirectory(atPath: directory + "/failover", withIntermediateDirectories: true)
        try write(try JSONEncoder().encode(entry), to: path)
    }

    func loadFailover() throws -> [FailoverEntry] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory + "/failover")) ?? []
        return try names.filter { $0.hasSuffix(".json") }.compactMap { name in
            guard let data = FileManager.default.contents(atPath: "\(directory)/failover/\(name)") else { return nil }
            return try JSONDecoder().decode(FailoverEntry.self, from: data)
        }
    }

    // MARK: Events: `DIR/events.log`, one JSON event a line, appended; `DIR/events.floor` after a compaction

    private var eventsPath: String { directory + "/events.log" }

    func appendEvent(_ event: ClusterEvent) throws -> Int64 {
        var line = try JSONEncoder().encode(event)
        line.append(UInt8(ascii: "\n"))
        if !FileManager.default.fileExists(atPath: eventsPath) {
            guard FileManager.default.createFile(atPath: eventsPath, contents: nil) else { throw POSIXError(.EIO) }
        }
        guard let handle = FileHandle(forWritingAtPath: eventsPath) else { throw POSIXError(.EIO) }
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: line)
        return event.revision
    }

    func loadEvents() throws -> (events: [ClusterEvent], floor: Int64) {
        let floor = FileManager.default.contents(atPath: directory + "/events.floor")
            .flatMap { Int64(String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
        guard let data = FileManager.default.contents(atPath: eventsPath) else { return ([], floor) }
        // A line torn by a kill mid-write is skipped; every whole line before it is an event.
        let events = data.split(separator: UInt8(ascii: "\n")).compactMap { try? JSONDecoder().decode(ClusterEvent.self, from: Data($0)) }
        return (events.filter { $0.revision > floor }, floor)
    }

    func compactEvents(dropping dropped: [ClusterEvent], floor: Int64) throws {
        // The floor first: a kill between the two leaves extra old events, never a hole a reader is not told of.
        try write(Data("\(floor)\n".utf8), to: directory + "/events.floor")
        let kept = try loadEvents().events
        var data = Data()
        for event in kept {
            data.append(try JSONEncoder().encode(event))
            data.append(UInt8(ascii: "\n"))
        }
        try write(data, to: eventsPath)
    }

    /// Writes land before they return.
    func flush() {}
}

/// A VM name as a file name or key part: its UTF-8 bytes in hex.
func failoverKey(_ vm: String) -> String { vm.utf8.map { String(format: "%02x", $0) }.joined() }
