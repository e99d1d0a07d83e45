import ClusterAPI
import ClusterCore
import ClusterTransport
import ClusterWire
import Logging

/// Who may call a node: its `AuthPolicy` from the cluster settings and its address, set up once at start.
enum NodeAuth {
    enum Role: String { case bootstrap, manager = "group manager", controller = "local controller" }

    static func adminSecretHash(_ cluster: ClusterSettings) throws -> String? {
        guard let path = cluster.auth.adminTokenFile else { return nil }
        do { return try AdminTokenFile.loadOrCreate(path).secretHash } catch let error as DozeError { throw error } catch {
            throw DozeError(.unavailable, "the admin token file \(path): \(error)")
        }
    }

    /// Signs this process's calls to other nodes, resolves the defaults and says at start what is open, loudly
    /// when something is open on an address other hosts reach.
    static func policy(_ cluster: ClusterSettings, host: String, role: Role, tokens: (any TokenAuthenticating)?, logger: Logger) -> AuthPolicy {
        NodeCredentials.install(secret: cluster.secret)
        let mode = cluster.auth.mode ?? AuthPolicy.defaultMode(listeningOn: host)
        let compat = cluster.auth.snoozeCompat ?? AuthPolicy.defaultSnoozeCompat(listeningOn: host)
        let loopback = AuthPolicy.isLoopback(host)
        let metadata: Logger.Metadata = ["doze/auth": "\(mode.rawValue)", "doze/snooze-compat": "\(compat.rawValue)", "doze/role": "\(role.rawValue)"]
        if !loopback && (mode == .open || compat == .open) {
            logger.warning("THE API IS OPEN on \(host), an address other hosts reach: anyone who can connect acts as the admin\(mode == .open ? "" : " on the Snooze API"). Use --auth tokens --snooze-compat token-in-query (or off) unless this network is yours alone.", metadata: metadata)
        } else if mode == .open || compat == .open {
            logger.notice("API open on loopback: a call without a token acts as the admin\(mode == .open ? "" : " on the Snooze API only")", metadata: metadata)
        } else {
            logger.info("API tokens required", metadata: metadata)
        }
        return AuthPolicy(mode: mode, snoozeCompat: compat, nodeSignature: NodeSignature(secret: cluster.secret), tokens: tokens,
                          onController: role == .controller, forwardsCredentials: role == .bootstrap)
    }
}
