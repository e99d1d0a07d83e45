import ClusterTransport
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// The outermost middleware of every role's router: gives each request its id (an incoming `X-Request-ID` when
/// it is sane, else a fresh one), puts it in the request's log metadata and in the task-local that log lines and
/// peer calls read, answers it in the response header, and counts the request by route pattern and status.
struct ObservabilityMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: NodeMetrics
    static var requestIDField: HTTPField.Name { HTTPField.Name(RequestID.header)! }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let id = RequestID.sanitized(request.headers[Self.requestIDField]) ?? RequestID.make()
        var context = context
        context.logger[metadataKey: "doze/request"] = "\(id)"
        let started = ContinuousClock.now
        var response: Response
        do {
            response = try await RequestID.$current.withValue(id) { try await next(request, context) }
        } catch let error as any HTTPResponseError {
            // What no inner middleware answered (an unmatched route): answered here, so it carries the id too.
            response = try error.response(from: request, context: context)
        } catch {
            count(request, context, status: 500, since: started)
            throw error
        }
        response.headers[Self.requestIDField] = id
        count(request, context, status: response.status.code, since: started)
        return response
    }

    /// The route's pattern (`/v1/vms/{name}`), never the raw path: ids and query strings stay out of labels.
    private func count(_ request: Request, _ context: Context, status: Int, since started: ContinuousClock.Instant) {
        let route = context.endpointPath ?? "unmatched"
        let elapsed = started.duration(to: .now)
        metrics.httpRequest(route: route, method: request.method.rawValue, status: status, duration: elapsed)
        // Requests that change something get a line at info, so every hop of a submission shows under its id;
        // reads (polls, probes, scrapes) only at debug. The route pattern, not the path: no query string (tokens).
        let level: Logger.Level = request.method == .get || request.method == .head ? .debug : .info
        context.logger.log(level: level, "http request", metadata: [
            "doze/route": "\(route)", "doze/method": "\(request.method.rawValue)", "doze/status": "\(status)",
            "doze/ms": "\(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)",
        ])
    }
}

/// `/metrics` and the middleware, on any role's router.
public enum Observability {
    /// Call before any other middleware is added: the request id must be set before anything logs.
    /// `collect` brings the scrape-time gauges and counters up to date just before each exposition.
    public static func install(on router: Router<BasicRequestContext>, metrics: NodeMetrics,
                               collect: @escaping @Sendable () async -> Void) {
        router.addMiddleware { ObservabilityMiddleware(metrics: metrics) }
        router.get("/metrics") { _, _ -> Response in
            await collect()
            var headers = HTTPFields()
            headers[.contentType] = NodeMetrics.contentType
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: metrics.exposition())))
        }
    }
}
