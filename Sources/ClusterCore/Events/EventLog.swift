/// The events the leader keeps, oldest first, and what a reader gets for a `since` revision. Pure: the journal
/// (`ClusterNode`) stores each event before appending it here, and stores what `append` drops.
///
/// Retention is the last `capacity` events. `floor` is the newest revision dropped: a reader who last saw a revision
/// below it may have missed an event, so it is refused (410) with the oldest revision still kept; a reader at or
/// past the floor misses nothing. Revisions need not be contiguous (etcd's are shared with every other key).
public struct EventLog: Sendable, Equatable {
    public let capacity: Int
    public private(set) var events: [ClusterEvent] = []
    public private(set) var floor: Int64

    public enum Read: Sendable, Equatable {
        case page(EventPage)
        /// `since` is below the floor: events after it are gone.
        case compacted(oldest: Int64?, floor: Int64)
    }

    /// `events` as read back from the store (any order); the newest `capacity` are kept.
    public init(capacity: Int, events: [ClusterEvent] = [], floor: Int64 = 0) {
        precondition(capacity > 0, "an event log keeps at least one event, got capacity \(capacity)")
        self.capacity = capacity
        self.floor = floor
        let sorted = events.filter { $0.revision > floor }.sorted { $0.revision < $1.revision }
        let excess = max(0, sorted.count - capacity)
        if excess > 0 { self.floor = sorted[excess - 1].revision }
        self.events = Array(sorted.dropFirst(excess))
    }

    /// The newest revision stored (the floor when every event was dropped; 0 for a new cluster).
    public var latest: Int64 { events.last?.revision ?? floor }

    /// MUST be invoked once the store has kept `event` under `event.revision`. Returns the events dropped to stay
    /// within `capacity` (a tenth at a time, so the store compacts in batches, not on every event).
    public mutating func append(_ event: ClusterEvent) -> [ClusterEvent] {
        precondition(event.revision > latest, "event revisions must increase: \(event.revision) after \(latest)")
        events.append(event)
        guard events.count > capacity + max(1, capacity / 10) else { return [] }
        let dropped = Array(events.prefix(events.count - capacity))
        events.removeFirst(dropped.count)
        floor = dropped.last!.revision
        return dropped
    }

    /// The events after `since` (all kept ones when nil), at most `limit`.
    public func read(since: Int64?, limit: Int) -> Read {
        if let since, since < floor { return .compacted(oldest: events.first?.revision, floor: floor) }
        let after = since ?? Int64.min
        // Binary search: the log holds up to `capacity` events and long-polls read it often.
        var low = 0, high = events.count
        while low < high {
            let mid = (low + high) / 2
            if events[mid].revision <= after { low = mid + 1 } else { high = mid }
        }
        let page = Array(events[low..<min(events.count, low + max(1, limit))])
        return .page(EventPage(events: page, latestRevision: latest, oldestRevision: events.first?.revision))
    }
}
