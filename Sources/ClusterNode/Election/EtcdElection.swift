import ClusterCore
import Foundation
import Logging

/// Leader election on etcd, for managers on several hosts. A candidate watches the leader key until it is absent,
/// then creates it on a lease of its own in one transaction (create-if-absent); the revision of that write is
/// the term (etcd revisions only grow) and the fence every record write is checked against. The leader keeps
/// its lease alive and **fences itself**: it stops leading the moment it can no longer prove the lease (no
/// acknowledged keep-alive within the TTL), which is before etcd could expire the key and let anyone else win.
public struct EtcdElection: LeaderElection {
    public let client: EtcdClient
    /// `PREFIX/leader`.
    public let key: String
    public let ttlSeconds: Int
    public var pollInterval: Duration
    let log: Logger

    public init(client: EtcdClient, prefix: String, ttlSeconds: Int, pollInterval: Duration = .milliseconds(50), logger: Logger) {
        self.client = client
        self.key = prefix + "/leader"
        self.ttlSeconds = max(2, ttlSeconds)
        self.pollInterval = pollInterval
        self.log = logger
    }

    public func campaign(candidate: NodeID) async throws -> any Leadership {
        var announced = false
        while true {
            try Task.checkCancellation()
            do {
                // A leader holds the key: watch it from the revision read, so that no delete between the read and
                // the watch is missed, and campaign the moment it goes. The watch is bounded; the read decides.
                let current = try await client.get(key)
                if current.kv != nil {
                    do { try await client.waitForDelete(key, after: current.revision, limit: .seconds(5)) } catch {
                        try await Task.sleep(for: pollInterval)   // no member would stream a watch: poll instead
                    }
                    continue
                }
                let lease = try await client.grantLease(ttlSeconds: ttlSeconds)
                let granted = ContinuousClock.now
                let outcome = try await client.createIfAbsent(key: key, value: Data(candidate.utf8), lease: lease.id)
                guard outcome.won else {
                    await client.revoke(lease: lease.id)
                    continue
                }
                log.info("won the etcd election", metadata: ["doze/term": "\(outcome.revision)", "doze/lease-ttl": "\(lease.ttl)"])
                return EtcdLeadership(client: client, lease: lease.id, ttl: lease.ttl, term: Term(outcome.revision), since: granted, log: log)
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                if !announced {
                    log.warning("etcd is unreachable; campaigning again", metadata: ["error": "\(error)"])
                    announced = true
                }
                try await Task.sleep(for: .milliseconds(250))
            }
        }
    }
}

/// One term on etcd: a keep-alive loop that ends the term itself when the lease can no longer be proven.
final class EtcdLeadership: Leadership, @unchecked Sendable {
    // @unchecked: `ended` and `waiters` are guarded by `lock`.
    let term: Term
    let lease: String
    private let client: EtcdClient
    private let lock = NSLock()
    private var ended = false
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private var keeper: Task<Void, Never>?

    init(client: EtcdClient, lease: String, ttl: Int, term: Term, since: ContinuousClock.Instant, log: Logger) {
        self.client = client
        self.lease = lease
        self.term = term
        keeper = Task { [weak self] in
            let reason = await Self.keepAlive(client: client, lease: lease, ttl: ttl, since: since)
            log.warning("leadership lost: \(reason)", metadata: ["doze/term": "\(term)"])
            self?.end()
        }
    }

    /// Keeps the lease alive until it cannot be proven. `deadline` is when etcd may expire it at the earliest:
    /// the send time of the last acknowledged keep-alive plus the TTL. A margin before it, this node stops leading.
    static func keepAlive(client: EtcdClient, lease: String, ttl: Int, since: ContinuousClock.Instant) async -> String {
        let margin = Duration.milliseconds(300)
        let period = Duration.milliseconds(ttl * 1000 / 3)
        var deadline = since + .seconds(ttl)
        while !Task.isCancelled {
            let wait = min(period, deadline - margin - .now)
            if wait > .zero { try? await Task.sleep(for: wait) }
            if Task.isCancelled { return "resigned" }
            if ContinuousClock.now >= deadline - margin { return "no keep-alive acknowledged within the lease TTL (\(ttl) s)" }
            let sent = ContinuousClock.now
            do {
                let left = try await client.keepAlive(lease: lease, timeout: min(period, max(.milliseconds(100), deadline - margin - sent)))
                guard left > 0 else { return "the lease expired" }
                deadline = sent + .seconds(left)
            } catch {
                // Transient (a member down, no quorum yet): try again until the deadline says otherwise.
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        return "resigned"
    }

    private func end() {
        let toWake: [CheckedContinuation<Void, Never>] = lock.withLock {
            ended = true
            defer { waiters = [] }
            return waiters
        }
        for waiter in toWake { waiter.resume() }
    }

    func lost() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now: Bool = lock.withLock {
                    if ended { return true }
                    waiters.append(continuation)
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            end()
        }
    }

    /// Revoking the lease deletes the leader key at once: the next candidate wins within one poll.
    func resign() async {
        keeper?.cancel()
        end()
        await client.revoke(lease: lease)
    }
}
