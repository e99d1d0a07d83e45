import ClusterCore
import ClusterWire
import Foundation
import HTTPTypes
import Hummingbird

/// The JSON error every Doze endpoint answers with: `{"error":{"code":"conflict","message":"…"}}`.
public struct APIError: Error, HTTPResponseError, Sendable {
    public var status: HTTPResponse.Status
    public var error: DozeError

    public init(_ error: DozeError) {
        self.error = error
        self.status = Self.status(for: error.kind)
    }

    public static func status(for kind: DozeError.Kind) -> HTTPResponse.Status {
        switch kind {
        case .badRequest: return .badRequest
        case .notFound: return .notFound
        case .conflict, .quotaExceeded: return .conflict
        case .forbidden: return .forbidden
        case .unauthorized: return .unauthorized
        case .payloadTooLarge: return .contentTooLarge
        case .unsupported, .hypervisor: return .unprocessableContent
        case .unavailable: return .serviceUnavailable
        }
    }

    struct Body: Encodable {
        struct Detail: Encodable {
            var code: String
            var message: String
        }
        var error: Detail
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        let body = Body(error: .init(code: error.kind.rawValue, message: error.message))
        let data = (try? WireCoding.encoder().encode(body)) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json"],
                        body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// Unknown paths and methods get the same JSON error as everything else, not a bare 404.
public struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    public func handle(_ request: Request, context: Context,
                       next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound || error.status == .methodNotAllowed {
            let what = error.status == .notFound ? "no such endpoint" : "method not allowed"
            throw APIError(DozeError(.notFound, "\(what): \(request.method) \(request.uri.path)"))
        }
    }
}

