import ClusterAPI
import ClusterCore
import ClusterTransport
import ClusterWire
import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import UnixSignals

/// Where a node listens: HTTP (TCP) and heartbeats (UDP) on the same host and, when fixed, the same port.
public struct ListenAddress: Sendable {
    public var host: String
    public var port: Int
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }
}

/// A `Service` around an async body, for the ServiceGroup.
struct TaskService: Service {
    let body: @Sendable () async -> Void
    func run() async throws { await cancelWhenGracefulShutdown { await body() } }
}

/// Builds one `ServiceGroup` per node role.
public enum HierarchyRuntime {
    /// Port 0 means "any": HTTP then serves on the port the heartbeat socket got. Take it from a TCP probe, so
    /// the number is one no TCP socket holds (a UDP-chosen port is often some outgoing connection's local port,
    /// and the HTTP bind then failed); a few tries cover the short race between probe and bind.
    static func bindHeartbeats(_ listen: ListenAddress, cluster: ClusterSettings) async throws -> UDPChannel {
        guard listen.port == 0 else {
            return try await UDPChannel.bind(host: listen.host, port: listen.port, multicastInterface: cluster.multicast != nil)
        }
        var lastError: (any Error)?
        for _ in 0..<5 {
            guard let port = freeTCPPort(host: listen.host) else { break }
            do {
                return try await UDPChannel.bind(host: listen.host, port: port, multicastInterface: cluster.multicast != nil)
            } catch {
                lastError = error
            }
        }
        if let lastError { throw lastError }
        return try await UDPChannel.bind(host: listen.host, port: 0, multicastInterface: cluster.multicast != nil)
    }

    /// A TCP port the kernel hands out for `host` right now (bound, read, released).
    static func freeTCPPort(host: String) -> Int? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else { return nil }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { return nil }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { return nil }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// The node's heartbeat link: its own socket, plus the shared multicast socket when the cluster has one.
    static func makeLink(_ id: NodeID, _ channel: UDPChannel, _ listen: ListenAddress, _ cluster: ClusterSettings,
                         stateDirectory: String) async throws -> HeartbeatLink {
        var multicast: UDPChannel?
        if let group = cluster.multicast {
            multicast = try await UDPChannel.joinMulticast(group: group, interfaceAddress: listen.host)
        }
        return HeartbeatLink(me: id, channel: channel, multicast: multicast, secret: cluster.secret,
                             incarnation: try NodeIdentity.nextIncarnation(stateDirectory: stateDirectory))
    }

    /// A node asked for port 0 serves HTTP on the port its heartbeat socket got, so one number names both.
    static func sameAsHeartbeat(_ listen: ListenAddress, _ channel: UDPChannel) -> ListenAddress {
        listen.port == 0 ? ListenAddress(host: listen.host, port: channel.localEndpoint.port) : listen
    }

    /// What every clustered node serves besides its role's routes: request ids and `/metrics`, JSON errors,
    /// `/health`, heartbeat counters. `collect` updates the role's own scrape-time metrics.
    static func baseRouter(_ link: HeartbeatLink, auth: AuthPolicy, metrics: NodeMetrics,
                           collect: @escaping @Sendable () async -> Void = {}) -> Router<BasicRequestContext> {
        let router = Router()
        Observability.install(on: router, metrics: metrics) {
            metrics.syncHeartbeats(await link.statistics)
            await collect()
        }
        router.addMiddleware { JSONErrorMiddleware() }
        router.addMiddleware { AuthMiddleware(policy: auth) }
        router.get("/health") { _, _ in HTTPReply.text("ok") }
        router.get("/v1/heartbeats") { _, _ in try HTTPReply.json(await link.statistics) }
        OpenAPIRoutes.register(on: router)
        return router
    }

    /// Everything a bootstrap serves.
    static func bootstrapRouter(_ node: BootstrapNode, link: HeartbeatLink, auth: AuthPolicy, metrics: NodeMetrics) -> Router<BasicRequestContext> {
        let router = baseRouter(link, auth: auth, metrics: metrics)
        BootstrapRoutes(backend: node).register(on: router)
        AuthForwardingRoutes(backend: node).register(on: router)
        KVMAppForwardingRoutes(backend: node).register(on: router)
        RebalancingForwardingRoutes(backend: node).register(on: router)
        EventForwardingRoutes(backend: node).register(on: router)
        NetworkForwardingRoutes(backend: node).register(on: router)
        return router
    }

    /// Everything a group manager serves, leader or not (a follower answers the leader's paths with an error).
    static func groupManagerRouter(_ node: GroupManagerNode, link: HeartbeatLink, auth: AuthPolicy, metrics: NodeMetrics) -> Router<BasicRequestContext> {
        let router = baseRouter(link, auth: auth, metrics: metrics) { metrics.showHosts(await node.controllersInLeaderBooks().map { ($0.id, $0.summary) }) }
        AuthRoutes(backend: node).register(on: router)
        GroupManagerRoutes(backend: node).register(on: router)
        KVMAppRoutes(backend: node).register(on: router)
        RebalancingRoutes(backend: node).register(on: router)
        EventRoutes(backend: node).register(on: router)
        NetworkRoutes(backend: node).register(on: router)
        return router
    }

    static func group(services: [any Service], logger: Logger) -> ServiceGroup {
        ServiceGroup(configuration: .init(services: services.map { .init(service: $0) },
                                          gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
    }

    static func application(router: Router<BasicRequestContext>, listen: ListenAddress, name: String, cluster: ClusterSettings,
                            logger: Logger, onListening: @escaping @Sendable (Endpoint) async -> Void) throws -> some Service {
        Application(router: router, server: try NodeTLS.server(limits: cluster.httpLimits, tls: cluster.tls), configuration: .init(address: .hostname(listen.host, port: listen.port), serverName: name),
                    onServerRunning: { channel in
                        await onListening(Endpoint(host: listen.host, port: channel.localAddress?.port ?? listen.port))
                    }, logger: logger)
    }

    /// Each node counts in its own registry (several nodes may share a process in tests, and copies of one
    /// `ClusterSettings`): a metrics object given in the settings is used, else a fresh one.
    static func ownMetrics(_ cluster: ClusterSettings, role: NodeMetrics.NodeRole) -> ClusterSettings {
        var cluster = cluster
        let metrics = cluster.metrics ?? NodeMetrics()
        metrics.declare(role: role)
        cluster.metrics = metrics
        return cluster
    }

    /// `doze bootstrap`.
    public static func runBootstrap(listen: ListenAddress, stateDirectory: String, cluster: ClusterSettings, logger: Logger,
                                    onListening: @escaping @Sendable (Endpoint) async -> Void = { _ in }) async throws {
        let cluster = ownMetrics(cluster, role: .bootstrap)
        let identity = try NodeIdentity.load(stateDirectory: stateDirectory)
        let channel = try await bindHeartbeats(listen, cluster: cluster)
        let listen = sameAsHeartbeat(listen, channel)
        let link = try await makeLink(identity.id, channel, listen, cluster, stateDirectory: stateDirectory)
        let node = BootstrapNode(id: identity.id, link: link, cluster: cluster, logger: logger)
        let check = LeaderTokenCheck { await node.leader?.control }
        let router = bootstrapRouter(node, link: link, auth: NodeAuth.policy(cluster, host: listen.host, role: .bootstrap, tokens: check, logger: logger),
                                     metrics: cluster.metrics!)
        let app = try application(router: router, listen: listen, name: "doze-bootstrap", cluster: cluster, logger: logger) { endpoint in
            logger.info("bootstrap listening", metadata: ["doze/address": "\(endpoint)", "doze/heartbeat": "\(channel.localEndpoint)"])
            await onListening(endpoint)
        }
        try await group(services: [TaskService { await node.run() }, app], logger: logger).run()
        await channel.close()
    }

    /// `doze gm`.
    public static func runGroupManager(listen: ListenAddress, stateDirectory: String, cluster: ClusterSettings,
                                       backend: CoordinationBackend, logger: Logger,
                                       onListening: @escaping @Sendable (Endpoint) async -> Void = { _ in }) async throws {
        let cluster = ownMetrics(cluster, role: .groupManager)
        let identity = try NodeIdentity.load(stateDirectory: stateDirectory)
        let channel = try await bindHeartbeats(listen, cluster: cluster)
        let listen = sameAsHeartbeat(listen, channel)
        let link = try await makeLink(identity.id, channel, listen, cluster, stateDirectory: stateDirectory)
        let records = try backend.openRecords(0, logger)
        let tokens = ClusterTokens(adminSecretHash: try NodeAuth.adminSecretHash(cluster)) { try await records.loadAuth() }
        let node = GroupManagerNode(id: identity.id, control: Endpoint(host: listen.host, port: listen.port), link: link,
                                    cluster: cluster, backend: backend, tokens: tokens, logger: logger)
        let router = groupManagerRouter(node, link: link, auth: NodeAuth.policy(cluster, host: listen.host, role: .manager, tokens: tokens, logger: logger),
                                        metrics: cluster.metrics!)
        let app = try application(router: router, listen: listen, name: "doze-gm", cluster: cluster, logger: logger) { endpoint in
            await node.setControl(endpoint)
            logger.info("group manager listening", metadata: ["doze/address": "\(endpoint)", "doze/id": "\(identity.id)"])
            await onListening(endpoint)
        }
        try await group(services: [TaskService { await node.run() }, app], logger: logger).run()
        await channel.close()
    }

    /// `doze lc` inside a cluster: the local controller plus its membership agent.
    public static func runLocalController(settings: LocalControllerSettings, cluster: ClusterSettings?,
                                          onListening: @escaping @Sendable (String, Int) async -> Void = { _, _ in }) async throws {
        var settings = settings
        settings.metrics = settings.metrics ?? NodeMetrics()
        var agent: ControllerAgent?
        var channel: UDPChannel?
        var udp: UDPChannel?
        if let cluster {
            udp = try await bindHeartbeats(ListenAddress(host: settings.host, port: settings.port), cluster: cluster)
            settings.port = sameAsHeartbeat(ListenAddress(host: settings.host, port: settings.port), udp!).port
        }
        let controller = try await LocalController.start(settings: settings)
        if let cluster, let udp {
            channel = udp
            let identity = try NodeIdentity.load(stateDirectory: settings.stateDirectory + "/membership")
            let link = try await makeLink(controller.id, udp, ListenAddress(host: settings.host, port: settings.port), cluster,
                                          stateDirectory: settings.stateDirectory + "/membership")
            agent = ControllerAgent(controller: controller, link: link,
                                    cluster: cluster, stateDirectory: settings.stateDirectory + "/membership",
                                    previousManager: identity.previousManager, logger: settings.logger)
        }
        let member = agent
        var statistics: (@Sendable () async -> [String: Int])?
        var extra: [any Service] = []
        if let member {
            let link = member.link
            statistics = { await link.statistics }
            extra = [TaskService { await member.run() }]
        }
        var auth: AuthPolicy?
        if let cluster {
            let admin = try NodeAuth.adminSecretHash(cluster).map { AdminTokenOnly(adminSecretHash: $0) }
            auth = NodeAuth.policy(cluster, host: settings.host, role: .controller, tokens: admin, logger: settings.logger)
        }
        let group = try LocalControllerRuntime.makeServiceGroup(
            controller: controller, settings: settings, heartbeatStatistics: statistics, extraServices: extra, auth: auth,
            tls: cluster?.tls
        ) { host, port in
            await member?.setControl(Endpoint(host: host, port: port))
            await onListening(host, port)
        }
        try await group.run()
        await channel?.close()
    }
}
