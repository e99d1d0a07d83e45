import ClusterCore
import Logging

/// What a group manager campaigns with and where, once it leads, it keeps the cluster's records: one pair, chosen
/// at start-up (`doze gm --etcd` or `--election-dir`), so the roles never ask which backend runs and never reach
/// through the election for its client.
public struct CoordinationBackend: Sendable {
    public let election: any LeaderElection
    /// Opens the records for one term of leadership; the etcd store fences every write with that term's key.
    let openRecords: @Sendable (_ term: Term, _ logger: Logger) throws -> any ClusterRecordStore

    /// Election and records on etcd, sharing one client (its TLS set up once).
    public static func etcd(_ settings: EtcdSettings, logger: Logger) throws -> CoordinationBackend {
        let client = try settings.client()
        let election = EtcdElection(client: client, prefix: settings.prefix, ttlSeconds: settings.leaseTTLSeconds, logger: logger)
        return CoordinationBackend(election: election) { term, logger in
            EtcdRecordStore(client: client, prefix: settings.prefix, term: Int64(term), logger: logger)
        }
    }

    /// The one-host backend: a `flock` election in `directory`, records in `directory/records`, both shared by
    /// every group manager on the host.
    public static func directory(_ directory: String) -> CoordinationBackend {
        CoordinationBackend(election: FlockElection(directory: directory)) { _, _ in
            try DirectoryRecordStore(directory: directory + "/records")
        }
    }
}
