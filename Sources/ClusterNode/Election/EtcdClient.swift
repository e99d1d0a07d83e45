import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL

/// Files for TLS to etcd (PEM).
public struct EtcdTLS: Sendable {
    public var caFile: String?
    public var certFile: String?
    public var keyFile: String?
    public init(caFile: String?, certFile: String?, keyFile: String?) {
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
    }
}

/// etcd 3.4's v3 JSON gateway (`POST /v3/…`, base64 keys and values, int64s as strings, proto3 defaults
/// omitted), enough for leader election and fenced records. One URL per member; a call that cannot reach a
/// member or gets a 5xx moves on to the next, so one dead member costs one connection attempt.
public struct EtcdClient: Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        /// etcd answered and refused (e.g. an unknown lease); not worth retrying on another member.
        public var refused: Bool
    }

    public let endpoints: [String]
    let http: HTTPClient

    public init(endpoints: [String], http: HTTPClient = EtcdClient.sharedHTTP) {
        self.endpoints = endpoints.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        self.http = http
    }

    /// Fails fast on a dead member (no connection retries until the deadline).
    public static let sharedHTTP: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .milliseconds(500)
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    /// A client speaking TLS to the members, made once per process (see `EtcdSettings.client()`).
    public static func tlsHTTP(_ tls: EtcdTLS) throws -> HTTPClient {
        var tlsConfiguration = TLSConfiguration.makeClientConfiguration()
        if let ca = tls.caFile { tlsConfiguration.trustRoots = .file(ca) }
        if let cert = tls.certFile, let key = tls.keyFile {
            tlsConfiguration.certificateChain = try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) }
            tlsConfiguration.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
        }
        var configuration = HTTPClient.Configuration(tlsConfiguration: tlsConfiguration)
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .milliseconds(500)
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    // MARK: Wire shapes (every field optional: etcd omits defaults)

    struct Header: Codable, Sendable { var revision: String? }
    public struct KeyValue: Codable, Sendable {
        public var key: Data
        public var value: Data?
        public var create_revision: String?
        public var mod_revision: String?
        public var lease: String?
    }
    struct Compare: Codable, Sendable {
        var key: Data
        var target: String
        var result: String
        var create_revision: String?
    }
    struct PutRequest: Codable, Sendable {
        var key: Data
        var value: Data
        var lease: String?
    }
    struct RangeRequest: Codable, Sendable {
        var key: Data
        var range_end: Data?
    }
    struct DeleteRequest: Codable, Sendable {
        var key: Data
        var range_end: Data?
    }
    struct RequestOp: Codable, Sendable {
        var request_put: PutRequest?
        var request_range: RangeRequest?
        var request_delete_range: DeleteRequest?
    }
    struct TxnRequest: Codable, Sendable {
        var compare: [Compare]
        var success: [RequestOp]
        var failure: [RequestOp]
    }
    struct RangeResponse: Codable, Sendable {
        var header: Header?
        var kvs: [KeyValue]?
    }
    struct TxnResponse: Codable, Sendable {
        struct Op: Codable, Sendable { var response_range: RangeResponse? }
        var header: Header?
        var succeeded: Bool?
        var responses: [Op]?
    }

    // MARK: Calls

    /// POSTs `body` to `path` on the first member that answers; 5xx and connection errors try the next.
    func post<Body: Encodable & Sendable, Reply: Decodable>(_ path: String, _ body: Body, as: Reply.Type,
                                                             timeout: Duration = .seconds(2)) async throws -> Reply {
        let bytes = try JSONEncoder().encode(body)
        var last: any Error = Failure(description: "no etcd endpoint configured", refused: false)
        for endpoint in endpoints {
            var request = HTTPClientRequest(url: endpoint + path)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: bytes))
            do {
                let response = try await http.execute(request, timeout: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000
                                                                                         + timeout.components.attoseconds / 1_000_000_000))
                let body = try await response.body.collect(upTo: 16 << 20)
                let status = Int(response.status.code)
                if status >= 500 {
                    last = Failure(description: "etcd at \(endpoint) answered \(status): \(String(buffer: body))", refused: false)
                    continue
                }
                guard status == 200 else {
                    throw Failure(description: "etcd at \(endpoint) refused \(path): \(status) \(String(buffer: body))", refused: true)
                }
                return try JSONDecoder().decode(Reply.self, from: Data(body.readableBytesView))
            } catch let failure as Failure where failure.refused {
                throw failure
            } catch {
                last = error
            }
        }
        throw last
    }

    /// Grants a lease; etcd raises a TTL below 2 s to 2 s. Returns the lease id and the granted TTL.
    public func grantLease(ttlSeconds: Int) async throws -> (id: String, ttl: Int) {
        struct Grant: Codable { var TTL: String }
        struct Granted: Codable { var ID: String?; var TTL: String? }
        let granted = try await post("/v3/lease/grant", Grant(TTL: "\(ttlSeconds)"), as: Granted.self)
        guard let id = granted.ID, let ttl = granted.TTL.flatMap(Int.init), ttl > 0 else {
            throw Failure(description: "etcd granted no lease", refused: true)
        }
        return (id, ttl)
    }

    /// One keep-alive; the TTL left, or 0 when the lease is gone (etcd then answers 200 without a TTL).
    public func keepAlive(lease: String, timeout: Duration) async throws -> Int {
        struct Ask: Codable { var ID: String }
        struct Answer: Codable {
            struct R: Codable { var ID: String?; var TTL: String? }
            var result: R?
        }
        let answer = try await post("/v3/lease/keepalive", Ask(ID: lease), as: Answer.self, timeout: timeout)
        return answer.result?.TTL.flatMap(Int.init) ?? 0
    }

    public func revoke(lease: String) async {
        struct Ask: Codable { var ID: String }
        struct Empty: Codable {}
        _ = try? await post("/v3/lease/revoke", Ask(ID: lease), as: Empty.self, timeout: .seconds(1))
    }

    /// Creates `key` = `value` on `lease` if the key does not exist. Won: the revision that created it (the term).
    /// Lost: nil and the current holder.
    public func createIfAbsent(key: String, value: Data, lease: String) async throws -> (won: Bool, revision: Int64, holder: KeyValue?) {
        let keyBytes = Data(key.utf8)
        let txn = TxnRequest(compare: [Compare(key: keyBytes, target: "CREATE", result: "EQUAL", create_revision: "0")],
                             success: [RequestOp(request_put: PutRequest(key: keyBytes, value: value, lease: lease))],
                             failure: [RequestOp(request_range: RangeRequest(key: keyBytes))])
        let reply = try await post("/v3/kv/txn", txn, as: TxnResponse.self)
        let revision = reply.header?.revision.flatMap(Int64.init) ?? 0
        if reply.succeeded == true { return (true, revision, nil) }
        return (false, revision, reply.responses?.first?.response_range?.kvs?.first)
    }

    public func get(_ key: String) async throws -> (kv: KeyValue?, revision: Int64) {
        let reply = try await post("/v3/kv/range", RangeRequest(key: Data(key.utf8)), as: RangeResponse.self)
        return (reply.kvs?.first, reply.header?.revision.flatMap(Int64.init) ?? 0)
    }

    /// Watches `key` from `revision` on and returns when it is deleted (or at once if it already was after that
    /// revision), or after `limit` without a delete (callers read the key again: a watch is an optimisation, never
    /// the only source of truth). Throws when no member streams the watch.
    public func waitForDelete(_ key: String, after revision: Int64, limit: Duration) async throws {
        struct Create: Codable { var key: Data; var start_revision: String }
        struct Watch: Codable { var create_request: Create }
        struct Line: Codable {
            struct Result: Codable {
                struct Event: Codable { var type: String? }
                var events: [Event]?
                var canceled: Bool?
            }
            var result: Result?
            var error: Failure?
            struct Failure: Codable { var message: String? }
        }
        let body = try JSONEncoder().encode(Watch(create_request: Create(key: Data(key.utf8), start_revision: "\(revision + 1)")))
        var last: any Error = Failure(description: "no etcd endpoint configured", refused: false)
        for endpoint in endpoints {
            var request = HTTPClientRequest(url: endpoint + "/v3/watch")
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
            do {
                let response = try await http.execute(request, timeout: .nanoseconds(Int64(limit.components.seconds) * 1_000_000_000
                                                                                         + limit.components.attoseconds / 1_000_000_000))
                guard response.status == .ok else {
                    last = Failure(description: "etcd at \(endpoint) refused the watch: \(response.status)", refused: false)
                    continue
                }
                var pending = ByteBuffer()
                for try await chunk in response.body {
                    var chunk = chunk
                    pending.writeBuffer(&chunk)
                    while let newline = pending.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
                        let length = newline - pending.readerIndex
                        guard let text = pending.readString(length: length) else { break }
                        pending.moveReaderIndex(forwardBy: 1)
                        guard let line = try? JSONDecoder().decode(Line.self, from: Data(text.utf8)) else { continue }
                        if line.error != nil || line.result?.canceled == true {
                            throw Failure(description: "etcd ended the watch: \(text.prefix(200))", refused: false)
                        }
                        if line.result?.events?.contains(where: { $0.type == "DELETE" }) == true { return }
                    }
                }
                return   // the stream ended (a member going away): read the key again
            } catch let error as HTTPClientError where error == .deadlineExceeded {
                return   // no delete within the limit
            } catch {
                last = error
            }
        }
        throw last
    }

    /// Every key under `prefix`.
    public func list(prefix: String) async throws -> [KeyValue] {
        let reply = try await post("/v3/kv/range", RangeRequest(key: Data(prefix.utf8), range_end: Self.rangeEnd(prefix)),
                                   as: RangeResponse.self, timeout: .seconds(10))
        return reply.kvs ?? []
    }

    /// `prefix` with its last byte + 1: the end of the range of keys starting with `prefix`.
    static func rangeEnd(_ prefix: String) -> Data {
        var bytes = Array(prefix.utf8)
        bytes[bytes.count - 1] += 1
        return Data(bytes)
    }

    /// A write that happens only while `fenceKey` was created at `fenceRevision`: a deposed leader's write fails.
    /// `value` nil deletes the key. Returns whether the fence held.
    public func fencedWrite(_ key: String, value: Data?, fenceKey: String, fenceRevision: Int64) async throws -> Bool {
        let keyBytes = Data(key.utf8)
        let op = value.map { RequestOp(request_put: PutRequest(key: keyBytes, value: $0)) }
            ?? RequestOp(request_delete_range: DeleteRequest(key: keyBytes))
        let txn = TxnRequest(compare: [Compare(key: Data(fenceKey.utf8), target: "CREATE", result: "EQUAL",
                                               create_revision: "\(fenceRevision)")],
                             success: [op], failure: [])
        return try await post("/v3/kv/txn", txn, as: TxnResponse.self).succeeded == true
    }

    /// `fencedWrite` of a put that answers the revision it happened at (nil when the fence did not hold): the one
    /// write of a transaction gets the store's new revision, which is the key's create revision for a new key.
    public func fencedPut(_ key: String, value: Data, fenceKey: String, fenceRevision: Int64) async throws -> Int64? {
        let txn = TxnRequest(compare: [Compare(key: Data(fenceKey.utf8), target: "CREATE", result: "EQUAL",
                                               create_revision: "\(fenceRevision)")],
                             success: [RequestOp(request_put: PutRequest(key: Data(key.utf8), value: value))], failure: [])
        let reply = try await post("/v3/kv/txn", txn, as: TxnResponse.self)
        guard reply.succeeded == true, let revision = reply.header?.revision.flatMap(Int64.init) else { return nil }
        return revision
    }
}
