import Hummingbird
import NIOCore

/// `GET /v1/openapi.json`: the native API's OpenAPI document (docs/openapi.json, compiled in), on every bootstrap
/// and group manager. Each operation's `x-doze-served-by` names the roles that serve it; `OpenAPITests` holds the
/// document and the routers to the same list.
public enum OpenAPIRoutes {
    public static let path = "/v1/openapi.json"

    public static func register<Context: RequestContext>(on router: Router<Context>) {
        let body = ByteBuffer(string: OpenAPIDocument.json)
        router.get(RouterPath(path)) { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: body))
        }
    }
}
