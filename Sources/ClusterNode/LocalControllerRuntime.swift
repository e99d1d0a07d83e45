import ClusterAPI
import ClusterWire
import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import UnixSignals

/// Builds and runs one local-controller node: the controller, its HTTP API, its event follower and its
/// metrics sampler, as one `ServiceGroup` (shut down in reverse order on SIGTERM / SIGINT).
public enum LocalControllerRuntime {
    /// Starts the controller and runs until a shutdown signal. `onListening` receives the bound address
    /// (useful with port 0).
    public static func run(settings: LocalControllerSettings,
                           onListening: @escaping @Sendable (String, Int) async -> Void = { _, _ in }) async throws {
        let controller = try await LocalController.start(settings: settings)
        let group = try makeServiceGroup(controller: controller, settings: settings, onListening: onListening)
        try await group.run()
    }

    public static func makeRouter(controller: LocalController, settings: LocalControllerSettings,
                                  heartbeatStatistics: (@Sendable () async -> [String: Int])? = nil,
                                  auth: AuthPolicy? = nil) -> Router<BasicRequestContext> {
        let router = Router()
        router.addMiddleware { JSONErrorMiddleware() }
        // Standalone (no cluster) a controller has no secret and no tokens: its API is its host's, as in seed 001.
        if let auth { router.addMiddleware { AuthMiddleware(policy: auth) } }
        router.get("/health") { _, _ in HTTPReply.text("ok") }
        if let heartbeatStatistics {
            router.get("/v1/heartbeats") { _, _ in try HTTPReply.json(await heartbeatStatistics()) }
        }
        LocalControllerRoutes(backend: controller, maxBodyBytes: settings.maxBodyBytes).register(on: router)
        HostNetworkRoutes(backend: controller).register(on: router)
        return router
    }

    static func makeServiceGroup(controller: LocalController, settings: LocalControllerSettings,
                                 heartbeatStatistics: (@Sendable () async -> [String: Int])? = nil, extraServices: [any Service] = [],
                                 auth: AuthPolicy? = nil, tls: HTTPTLSSettings? = nil,
                                 onListening: @escaping @Sendable (String, Int) async -> Void) throws -> ServiceGroup {
        let log = settings.logger
        let app = Application(
            router: makeRouter(controller: controller, settings: settings, heartbeatStatistics: heartbeatStatistics, auth: auth),
            server: try NodeTLS.server(limits: settings.httpLimits, tls: tls),
            configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: "doze-lc"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? settings.port
                await controller.setAdvertisedAddress(NetworkAddress(address: settings.host, port: port))
                log.info("local controller listening", metadata: ["doze/address": "\(settings.host):\(port)",
                                                                  "doze/id": "\(controller.id)"])
                await onListening(settings.host, port)
            },
            logger: log)
        return ServiceGroup(configuration: .init(
            services: [
                .init(service: EventFollower(controller: controller)),
                .init(service: PeriodicSampler.hostMetrics(controller, every: settings.sampleInterval)),
                .init(service: PeriodicSampler.vmUsage(controller, every: settings.usageInterval)),
            ] + extraServices.map { .init(service: $0) } + [.init(service: app)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: log))
    }
}

/// Keeps the controller's books in step with the host's lifecycle events.
struct EventFollower: Service {
    let controller: LocalController
    func run() async throws {
        await cancelWhenGracefulShutdown { await controller.followEvents() }
    }
}

/// Runs `sample` every `interval` until shutdown, with the time since it started: the host metrics of
/// `/hypervisor/metrics` and each VM's use for `/v1/vms/{name}/usage` (issue 12's monitoring).
struct PeriodicSampler: Service {
    let interval: Duration
    let sample: @Sendable (_ sinceStart: Duration) async -> Void

    func run() async throws {
        let clock = ContinuousClock()
        let start = clock.now
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await sample(start.duration(to: clock.now))
                try? await Task.sleep(for: interval)
            }
        }
    }

    static func hostMetrics(_ controller: LocalController, every interval: Duration) -> PeriodicSampler {
        PeriodicSampler(interval: interval) { elapsed in
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            await controller.takeSample(monotonicSeconds: seconds, wallTime: Date().timeIntervalSince1970)
        }
    }

    static func vmUsage(_ controller: LocalController, every interval: Duration) -> PeriodicSampler {
        PeriodicSampler(interval: interval) { elapsed in
            await controller.sampleUsage(now: elapsed, wallClockMs: Int64(Date().timeIntervalSince1970 * 1000))
        }
    }
}
