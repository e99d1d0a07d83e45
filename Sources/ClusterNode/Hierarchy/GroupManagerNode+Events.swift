import ClusterAPI
import ClusterCore

// The events stream is the leader's; a plain manager refuses it, naming the leader. A tenant's token sees its
// own VMs' and tasks' events only.
extension GroupManagerNode: EventBackend {
    public func events(since: Int64?, wait: Duration) async throws(DozeError) -> EventLog.Read {
        let principal = RequestPrincipal.current
        let leader = try await leading()
        guard let tenant = principal.scope else { return try await leader.readEvents(since: since, wait: wait) }
        // Others' events wake the long-poll too: wait on, from past them, until one is the tenant's or time is up.
        let deadline = ContinuousClock.now + wait
        var from = since
        while true {
            let read = try await leader.readEvents(since: from, wait: max(.zero, deadline - ContinuousClock.now))
            guard case .page(let page) = read else { return read }
            let own = page.scoped(to: tenant, isOwn: principal.sees)
            if !own.events.isEmpty || page.events.isEmpty || ContinuousClock.now >= deadline
                || (own.resume(after: from) ?? 0) < page.latestRevision { return .page(own) }
            from = own.resume(after: from)
        }
    }
}
