import ClusterAPI
import ClusterCore

// The events stream is the leader's; a plain manager refuses it, naming the leader.
extension GroupManagerNode: EventBackend {
    public func events(since: Int64?, wait: Duration) async throws(DozeError) -> EventLog.Read {
        try await leading().readEvents(since: since, wait: wait)
    }
}
