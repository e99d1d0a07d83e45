import AsyncHTTPClient
import ClusterCore
import ClusterWire
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization

/// JSON over HTTP/1.1 keep-alive between roles (pooled connections per peer).
public struct PeerClient: Sendable {
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var endpoint: Endpoint
        public var status: Int?
        public var message: String
        public var description: String { "\(endpoint): \(status.map { "HTTP \($0): " } ?? "")\(message)" }
    }

    let http: HTTPClient
    public var timeout: Duration

    /// The process-wide client between roles. A peer that refuses connections fails the call at once: AHC's
    /// default retries connecting until the call's deadline, so a call to a killed leader hung for its whole
    /// timeout (40 s) instead of moving on to the new one.
    public static let sharedHTTP: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .seconds(2)
        // Well under the servers' idle timeout (30 s by default): a pooled connection is dropped here before the
        // peer closes it, so a call never goes out on a connection the peer is closing.
        configuration.connectionPool.idleTimeout = .seconds(10)
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    /// HTTPS to every peer, verified against `caFile` (PEM): set once per process, before the first call, when the
    /// cluster's HTTP APIs use TLS (`--tls-ca`, or the CLI's `--ca-file`).
    public static func useTLS(caFile: String) throws {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .seconds(2)
        configuration.connectionPool.idleTimeout = .seconds(10)
        tlsHTTP.withLock { $0 = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration) }
    }

    private static let tlsHTTP = Mutex<HTTPClient?>(nil)

    public init(timeout: Duration = .seconds(2), http: HTTPClient = PeerClient.sharedHTTP) {
        self.http = http
        self.timeout = timeout
    }

    /// Sends `body` (JSON, or raw text for a `String`) and returns status and body.
    public func send(_ method: HTTPMethod, _ endpoint: Endpoint, _ path: String, body: (some Encodable & Sendable)? = nil as String?,
                     timeout: Duration? = nil) async throws -> (status: Int, body: ByteBuffer) {
        let tlsClient = Self.tlsHTTP.withLock { $0 }
        let http = tlsClient ?? self.http
        var request = HTTPClientRequest(url: "\(tlsClient == nil ? "http" : "https")://\(endpoint.host):\(endpoint.port)\(path)")
        request.method = method
        if let signer = NodeCredentials.signer {
            request.headers.add(name: NodeSignature.header, value: signer.sign(method: method.rawValue, target: path, unixMs: NodeSignature.nowMs))
        }
        if let authorization = NodeCredentials.forwardedAuthorization ?? NodeCredentials.clientAuthorization {
            request.headers.add(name: "Authorization", value: authorization)
        }
        if let body {
            let bytes: Data
            if let text = body as? String { bytes = Data(text.utf8) } else { bytes = try WireCoding.peerEncoder().encode(body) }
            request.body = .bytes(ByteBuffer(bytes: bytes))
            request.headers.add(name: "Content-Type", value: body is String ? "text/plain" : "application/json")
        }
        let limit = timeout ?? self.timeout
        do {
            let response = try await http.execute(request, timeout: .nanoseconds(Int64(limit.components.seconds) * 1_000_000_000
                                                                                     + limit.components.attoseconds / 1_000_000_000))
            let bytes = try await response.body.collect(upTo: 64 << 20)
            return (Int(response.status.code), bytes)
        } catch let error as Failure {
            throw error
        } catch {
            throw Failure(endpoint: endpoint, status: nil, message: "\(error)")
        }
    }

    /// Sends and decodes a JSON answer; any non-2xx status is a `Failure` carrying the peer's message.
    public func call<Reply: Decodable>(_ method: HTTPMethod, _ endpoint: Endpoint, _ path: String,
                                       body: (some Encodable & Sendable)? = nil as String?, as: Reply.Type,
                                       timeout: Duration? = nil) async throws -> Reply {
        let (status, bytes) = try await send(method, endpoint, path, body: body, timeout: timeout)
        guard (200..<300).contains(status) else {
            throw Failure(endpoint: endpoint, status: status, message: String(buffer: bytes))
        }
        if Reply.self == String.self { return String(buffer: bytes) as! Reply }
        do {
            return try WireCoding.decode(Reply.self, from: bytes.readableBytesView)
        } catch {
            throw Failure(endpoint: endpoint, status: status, message: "undecodable answer: \(error)")
        }
    }
}
