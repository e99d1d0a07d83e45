import ClusterCore
import ClusterWire
import Foundation
import Logging

/// The cluster records on etcd (`PREFIX/records/tasks/<id>`, `…/ippool`, `…/apps`, `…/sleeping`), for managers on several hosts.
/// Every write is a transaction fenced by the leader key's creation revision (the leader's term): once this node
/// is deposed, its writes fail in etcd and never reach the records. Writes go out one at a time in the order they
/// were made (a later pool never lands before an earlier one); `flush` waits for them.
final class EtcdRecordStore: ClusterRecordStore, @unchecked Sendable {
    // @unchecked: `pending`, `failure` and `tail` are guarded by `lock`.
    let client: EtcdClient
    let prefix: String
    let fenceKey: String
    let term: Int64
    let log: Logger
    private let lock = NSLock()
    private var tail: Task<Void, Never>?
    private var failure: String?
    /// Event revision → its key (`…/events/<term>-<n>`), for compaction; and this term's count of events.
    private var eventKeys: [Int64: String] = [:]
    private var eventsWritten = 0

    init(client: EtcdClient, prefix: String, term: Int64, logger: Logger) {
        self.client = client
        self.prefix = prefix + "/records"
        self.fenceKey = prefix + "/leader"
        self.term = term
        self.log = logger
    }

    private func enqueue(_ key: String, _ value: Data?) {
        lock.withLock {
            let previous = tail
            tail = Task { [self] in
                await previous?.value
                guard lock.withLock({ failure == nil }) else { return }
                var attempt = 0
                while true {
                    do {
                        if try await client.fencedWrite(key, value: value, fenceKey: fenceKey, fenceRevision: term) { return }
                        lock.withLock { failure = "this node no longer leads (term \(term)): etcd refused its write" }
                        log.warning("a record write was fenced off: this node no longer leads", metadata: ["doze/term": "\(term)"])
                        return
                    } catch {
                        // etcd unreachable or without quorum: retry, bounded, then give up on this leadership's writes.
                        attempt += 1
                        if attempt >= 40 {
                            lock.withLock { failure = "etcd did not take a record write: \(error)" }
                            return
                        }
                        try? await Task.sleep(for: .milliseconds(250))
                    }
                }
            }
        }
    }

    private func encode(_ value: some Encodable) throws -> Data { try JSONEncoder().encode(value) }

    func saveTask(_ record: TaskRecord) throws { enqueue("\(prefix)/tasks/\(record.id)", try encode(record)) }
    func deleteTask(_ id: String) throws { enqueue("\(prefix)/tasks/\(id)", nil) }
    func saveIPPool(_ pool: IPPool) throws { enqueue("\(prefix)/ippool", try encode(pool)) }
    func saveApps(_ apps: [KVMAppRecord]) throws { enqueue("\(prefix)/apps", try encode(apps.sorted { $0.id < $1.id })) }
    func saveSleepingHosts(_ hosts: [SleepingHost]) throws { enqueue("\(prefix)/sleeping", try encode(hosts.sorted { $0.id < $1.id })) }

    func saveNetworks(_ book: NetworkBook) throws { enqueue("\(prefix)/networks", try encode(book)) }

    func loadNetworks() async throws -> NetworkBook? {
        guard let data = try await client.get("\(prefix)/networks").kv?.value else { return nil }
        return try JSONDecoder().decode(NetworkBook.self, from: data)
    }

    func saveAuth(_ book: AuthBook) throws { enqueue("\(prefix)/auth", try encode(book)) }

    func loadAuth() async throws -> AuthBook? {
        guard let data = try await client.get("\(prefix)/auth").kv?.value else { return nil }
        return try JSONDecoder().decode(AuthBook.self, from: data)
    }

    func loadSleepingHosts() async throws -> [SleepingHost] {
        guard let data = try await client.get("\(prefix)/sleeping").kv?.value else { return [] }
        return try JSONDecoder().decode([SleepingHost].self, from: data)
    }

    func saveMigration(_ record: MigrationRecord) throws { enqueue("\(prefix)/migrations/\(record.id)", try encode(record)) }
    func deleteMigration(_ id: String) throws { enqueue("\(prefix)/migrations/\(id)", nil) }

    func loadMigrations() async throws -> [MigrationRecord] {
        try await client.list(prefix: "\(prefix)/migrations/").compactMap { kv in
            kv.value.flatMap { try? JSONDecoder().decode(MigrationRecord.self, from: $0) }
        }
    }

    func saveFailoverEntry(_ entry: FailoverEntry?, vm: String) throws {
        enqueue("\(prefix)/failover/\(failoverKey(vm))", try entry.map(encode))
    }

    func loadFailover() async throws -> [FailoverEntry] {
        try await client.list(prefix: "\(prefix)/failover/").map { kv in
            guard let data = kv.value else { throw DozeError(.unavailable, "empty failover record \(kv.key)") }
            return try JSONDecoder().decode(FailoverEntry.self, from: data)
        }
    }

    // MARK: Events: one key per event; its create revision is the event's revision, so a new leader goes on with
    // etcd's own sequence. Keys sort by term, then order within the term, i.e. by revision.

    func appendEvent(_ event: ClusterEvent) async throws -> Int64 {
        let key = lock.withLock {
            eventsWritten += 1
            return "\(prefix)/events/\(String(format: "%020lld-%012d", term, eventsWritten))"
        }
        guard let revision = try await client.fencedPut(key, value: try encode(event), fenceKey: fenceKey, fenceRevision: term) else {
            throw DozeError(.unavailable, "this node no longer leads (term \(term)): etcd refused the event")
        }
        lock.withLock { eventKeys[revision] = key }
        return revision
    }

    func loadEvents() async throws -> (events: [ClusterEvent], floor: Int64) {
        let floor = try await client.get("\(prefix)/events-floor").kv?.value
            .flatMap { Int64(String(decoding: $0, as: UTF8.self)) } ?? 0
        var events: [ClusterEvent] = []
        for kv in try await client.list(prefix: "\(prefix)/events/") {
            guard let data = kv.value, let revision = kv.create_revision.flatMap(Int64.init),
                  var event = try? JSONDecoder().decode(ClusterEvent.self, from: data) else { continue }
            event.revision = revision
            events.append(event)
            lock.withLock { eventKeys[revision] = String(decoding: kv.key, as: UTF8.self) }
        }
        return (events.filter { $0.revision > floor }, floor)
    }

    func compactEvents(dropping dropped: [ClusterEvent], floor: Int64) throws {
        // The floor first (writes land in order): a reader is told of a gap before it exists.
        enqueue("\(prefix)/events-floor", Data("\(floor)".utf8))
        for event in dropped {
            guard let key = lock.withLock({ eventKeys.removeValue(forKey: event.revision) }) else { continue }
            enqueue(key, nil)
        }
    }

    func flush() async throws {
        let last = lock.withLock { tail }
        await last?.value
        if let failure = lock.withLock({ failure }) { throw DozeError(.unavailable, failure) }
    }

    func loadTasks() async throws -> [TaskRecord] {
        try await client.list(prefix: "\(prefix)/tasks/").compactMap { kv in
            kv.value.flatMap { try? JSONDecoder().decode(TaskRecord.self, from: $0) }
        }
    }

    func loadIPPool() async throws -> IPPool? {
        guard let data = try await client.get("\(prefix)/ippool").kv?.value else { return nil }
        return try JSONDecoder().decode(IPPool.self, from: data)
    }

    func loadApps() async throws -> [KVMAppRecord] {
        guard let data = try await client.get("\(prefix)/apps").kv?.value else { return [] }
        return try JSONDecoder().decode([KVMAppRecord].self, from: data)
    }
}
