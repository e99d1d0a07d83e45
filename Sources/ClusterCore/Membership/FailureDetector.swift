/// Declares a peer dead when nothing was heard from it for `timeout`. Pure: time is passed in.
///
/// Any accepted heartbeat resets the peer's deadline; `onTick` returns (and forgets) the peers whose deadline passed.
public struct FailureDetector<ID: Hashable & Sendable>: Sendable {
    public var timeout: Duration
    public private(set) var lastHeard: [ID: MonotonicTime] = [:]

    public init(timeout: Duration) {
        self.timeout = timeout
    }

    /// MUST be invoked for every accepted message from `id`. Returns true when `id` was not known before.
    @discardableResult
    public mutating func onHeartbeat(from id: ID, now: MonotonicTime) -> Bool {
        lastHeard.updateValue(now, forKey: id) == nil
    }

    /// MUST be invoked periodically. Returns the peers that just timed out, oldest first.
    public mutating func onTick(now: MonotonicTime) -> [ID] {
        let dead = lastHeard.filter { now - $0.value > timeout }.sorted { $0.value < $1.value }.map(\.key)
        for id in dead { lastHeard[id] = nil }
        return dead
    }

    public mutating func forget(_ id: ID) { lastHeard[id] = nil }

    public func isAlive(_ id: ID) -> Bool { lastHeard[id] != nil }

    public var members: [ID] { Array(lastHeard.keys) }
}

/// Drops replayed datagrams: per sender, an incarnation (one per process start, higher than the one before) and a
/// sequence number that only grows. A datagram is new if its incarnation is unseen-and-newer or its sequence is higher.
public struct ReplayGuard: Sendable {
    public struct Stamp: Sendable, Equatable, Codable {
        public var incarnation: UInt64
        public var sequence: UInt64
        public init(incarnation: UInt64, sequence: UInt64) {
            self.incarnation = incarnation
            self.sequence = sequence
        }
    }

    /// The incarnation of a process start: the wall clock in ns, but never at or below the previous start's
    /// (`previous`, kept in the node's state directory). The wall clock alone would step back with the machine's
    /// clock (NTP correcting a clock that booted ahead) and every peer would drop the restarted node as a replay.
    public static func nextIncarnation(previous: UInt64?, wallClockNanoseconds: UInt64) -> UInt64 {
        guard let previous, previous < UInt64.max else { return wallClockNanoseconds }
        return max(previous + 1, wallClockNanoseconds)
    }

    private var latest: [NodeID: Stamp] = [:]
    public init() {}

    /// Accepts and records `stamp` if it is newer than anything seen from `sender`.
    /// A restarted sender (new, higher incarnation) is accepted; an old incarnation is a replay.
    public mutating func accept(_ stamp: Stamp, from sender: NodeID) -> Bool {
        if let seen = latest[sender] {
            if stamp.incarnation < seen.incarnation { return false }
            if stamp.incarnation == seen.incarnation && stamp.sequence <= seen.sequence { return false }
        }
        latest[sender] = stamp
        return true
    }
}
