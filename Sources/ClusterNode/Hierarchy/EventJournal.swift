import ClusterCore
import Foundation
import Logging
import Synchronization

/// The leader's events stream, for one term: a thin shell around `EventLog`. It stamps each event with the wall
/// time, stores it (the directory's log or etcd, which answers the revision) and only then shows it to readers, so
/// nothing a client saw can be missing from the records a next leader reads back. Long-polls park here until an
/// event arrives, the wait ends or the term does.
actor EventJournal {
    /// The most events one answer carries (a reader asks again at once when `latestRevision` is ahead).
    static let pageLimit = 500

    private var log: EventLog
    private let store: (any ClusterRecordStore)?
    private let logger: Logger
    private var loaded = false
    private var stopped = false
    private var writing = false
    /// Recorded, not yet stored: filled without awaiting the actor, so events keep the order they were made in.
    private let inbox = Mutex<[ClusterEvent]>([])
    private var waiters: [UUID: CheckedContinuation<Void, Never>] = [:]

    init(store: (any ClusterRecordStore)?, capacity: Int, logger: Logger) {
        self.store = store
        self.log = EventLog(capacity: capacity)
        self.logger = logger
    }

    /// Reads back what earlier leaders stored; until then readers wait and recorded events queue.
    func load() async {
        if let store {
            do {
                let (events, floor) = try await store.loadEvents()
                log = EventLog(capacity: log.capacity, events: events, floor: floor)
            } catch {
                logger.error("cannot read back the events; the stream restarts from this leader's own", metadata: ["error": "\(error)"])
            }
        }
        loaded = true
        logger.info("events read back", metadata: ["doze/events": "\(log.events.count)", "doze/revision": "\(log.latest)"])
        wakeAll()
        startWriting()
    }

    func stop() {
        stopped = true
        wakeAll()
    }

    /// Queues events in the order given; they are stored one at a time.
    nonisolated func record(_ events: [ClusterEvent]) {
        guard !events.isEmpty else { return }
        inbox.withLock { $0 += events }
        Task { await self.startWriting() }
    }

    private func startWriting() {
        guard loaded, !writing else { return }
        writing = true
        Task { await self.writeQueued() }
    }

    private func writeQueued() async {
        defer { writing = false }
        while !stopped {
            guard var event = inbox.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) else { return }
            event.time = Date().formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
            event.revision = log.latest + 1
            if let store {
                do { event.revision = try await store.appendEvent(event) } catch {
                    // Fenced (this node no longer leads) or etcd gone: the event is not shown, as it is not kept.
                    logger.warning("an event was not stored; dropped", metadata: ["doze/event": "\(event.kind)", "error": "\(error)"])
                    continue
                }
            }
            guard event.revision > log.latest else {
                logger.error("the store answered an old revision; event dropped", metadata: ["doze/revision": "\(event.revision)"])
                continue
            }
            let dropped = log.append(event)
            if !dropped.isEmpty {
                do { try store?.compactEvents(dropping: dropped, floor: log.floor) } catch {
                    logger.warning("cannot compact the stored events", metadata: ["error": "\(error)"])
                }
            }
            wakeAll()
        }
    }

    /// The events after `since` (all kept when nil); with `wait`, parks until there is one or the wait is over.
    func read(since: Int64?, wait: Duration) async throws(DozeError) -> EventLog.Read {
        let deadline = ContinuousClock.now + wait
        while true {
            if loaded {
                let answer = log.read(since: since, limit: Self.pageLimit)
                guard case .page(let page) = answer, page.events.isEmpty, !stopped, ContinuousClock.now < deadline else { return answer }
            } else if stopped || ContinuousClock.now >= deadline {
                throw DozeError(.unavailable, "the leader is still reading back the events; ask again")
            }
            await parked(until: deadline)
        }
    }

    private func parked(until deadline: ContinuousClock.Instant) async {
        let id = UUID()
        await withCheckedContinuation { continuation in
            waiters[id] = continuation
            Task {
                try? await Task.sleep(until: deadline)
                self.wake(id)
            }
        }
    }

    private func wake(_ id: UUID) { waiters.removeValue(forKey: id)?.resume() }

    private func wakeAll() {
        let parked = waiters
        waiters = [:]
        for continuation in parked.values { continuation.resume() }
    }
}
