import ClusterCore
import ClusterTransport
import ClusterWire
import Foundation
import HTTPTypes
import Hummingbird

/// What the events surface asks of the leader.
public protocol EventBackend: Sendable {
    /// The events after `since` (every kept one when nil); waits up to `wait` for one when there is none yet.
    func events(since: Int64?, wait: Duration) async throws(DozeError) -> EventLog.Read
}

/// The longest one `GET /v1/events?wait=` parks (an event stream parks this long between keep-alive comments).
public let maximumEventWait: Duration = .seconds(60)

/// `GET /v1/events?since=REV&wait=SECONDS` on the leader: JSON (`EventPage`), or with `Accept: text/event-stream`
/// server-sent events (`id:` = revision, resumable with `Last-Event-ID`). A `since` older than what is kept is
/// answered 410 with the oldest revision still kept. The bootstrap serves the same (`EventForwardingRoutes`).
public struct EventRoutes<Backend: EventBackend>: Sendable {
    public let backend: Backend

    public init(backend: Backend) { self.backend = backend }

    public func register<Context: RequestContext>(on router: Router<Context>) {
        let backend = self.backend
        router.get("/v1/events") { request, _ in
            let since = try EventQuery.since(request)
            let wait = try EventQuery.wait(request)
            if EventQuery.wantsStream(request) {
                // The body is written after the handler (and the auth middleware's scope) returned: the caller's
                // principal goes along explicitly, so a tenant's stream stays the tenant's.
                let principal = RequestPrincipal.current
                // A term's stream ends with it (the backend refuses once this node no longer leads): clients reconnect.
                return EventStream.response(since: since, retryFailures: false) { since, wait in
                    try await RequestPrincipal.$current.withValue(principal) {
                        try await api { () async throws(DozeError) in try await backend.events(since: since, wait: wait) }
                    }
                }
            }
            return try EventQuery.reply(try await api { () async throws(DozeError) in try await backend.events(since: since, wait: wait) })
        }
    }
}

/// The bootstrap passes `GET /v1/events` to the current leader. An event stream is kept by the bootstrap itself,
/// as long-polls to whichever node leads: it goes on across a leader change, from the last revision it sent.
public struct EventForwardingRoutes<Backend: BootstrapBackend>: Sendable {
    public let backend: Backend

    public init(backend: Backend) { self.backend = backend }

    public func register<Context: RequestContext>(on router: Router<Context>) {
        let backend = self.backend
        router.get("/v1/events") { request, _ in
            let since = try EventQuery.since(request)
            let wait = try EventQuery.wait(request)
            guard EventQuery.wantsStream(request) else {
                return HTTPReply.passThrough(try await api { () async throws(DozeError) in
                    try await backend.callLeader(.get, EventQuery.target(since: since, wait: wait), body: nil, timeout: wait + .seconds(30))
                })
            }
            // The client's token goes on with every long-poll (the body outlives the auth middleware's scope).
            let authorization = NodeCredentials.forwardedAuthorization
            return EventStream.response(since: since, retryFailures: true) { since, wait in
                let answer = try await NodeCredentials.$forwardedAuthorization.withValue(authorization) {
                    try await api { () async throws(DozeError) in
                        try await backend.callLeader(.get, EventQuery.target(since: since, wait: wait), body: nil, timeout: wait + .seconds(30))
                    }
                }
                return try EventQuery.decode(answer)
            }
        }
    }
}

/// Reading the query, and the answers' shapes, for both routes.
public enum EventQuery {
    /// `since=REV` (an integer >= 0), else `Last-Event-ID` (a resumed event stream); nil when neither is given.
    static func since(_ request: Request) throws -> Int64? {
        let lastEventID = HTTPField.Name("Last-Event-ID").flatMap { request.headers[$0] }
        guard let text = request.optionalQuery("since") ?? lastEventID else { return nil }
        guard let revision = Int64(text.trimmingCharacters(in: .whitespaces)), revision >= 0 else {
            throw APIError(DozeError(.badRequest, "since must be an event revision (an integer >= 0), got '\(text)'"))
        }
        return revision
    }

    static func wait(_ request: Request) throws -> Duration {
        guard let text = request.optionalQuery("wait") else { return .zero }
        guard let seconds = Double(text), seconds >= 0, seconds.isFinite else {
            throw APIError(DozeError(.badRequest, "wait must be a number of seconds >= 0, got '\(text)'"))
        }
        return boundedWait(seconds: seconds)
    }

    /// At most `maximumEventWait`, clamped before the conversion: a huge number (1e16 s, found by the fuzzer) trapped
    /// converting to Int64 and took the node down.
    public static func boundedWait(seconds: Double) -> Duration {
        min(.milliseconds(Int64(min(max(seconds, 0), Double(maximumEventWait.components.seconds)) * 1000)), maximumEventWait)
    }

    static func wantsStream(_ request: Request) -> Bool {
        request.headers[.accept]?.contains("text/event-stream") == true
    }

    static func target(since: Int64?, wait: Duration) -> String {
        var query = ["wait=\(Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18)"]
        if let since { query.insert("since=\(since)", at: 0) }
        return "/v1/events?" + query.joined(separator: "&")
    }

    /// The 410's body: the error, plus where a reader can resume (knowing it missed events).
    public struct Gone: Codable, Sendable, Equatable {
        public struct Detail: Codable, Sendable, Equatable {
            public var code: String
            public var message: String
            /// The oldest event still kept (nil when none is).
            public var oldestRevision: Int64?
            /// A `since` that is answered: every event kept.
            public var resumeSince: Int64
        }
        public var error: Detail
    }

    static func gone(oldest: Int64?, floor: Int64) -> Gone {
        let message = "events up to revision \(floor) were compacted away; "
            + (oldest.map { "the oldest kept is \($0)" } ?? "none is kept yet") + " (ask with since=\(floor) to read every kept one)"
        return Gone(error: .init(code: "gone", message: message, oldestRevision: oldest, resumeSince: floor))
    }

    static func reply(_ read: EventLog.Read) throws -> Response {
        switch read {
        case .page(let page): return try HTTPReply.json(page)
        case .compacted(let oldest, let floor): return try HTTPReply.json(gone(oldest: oldest, floor: floor), status: .gone)
        }
    }

    /// The leader refused the stream's request (a 4xx other than 410): asking again would not help.
    struct Refused: Error { var body: String }

    /// A leader's answer, as the bootstrap's event stream reads it.
    static func decode(_ answer: (status: Int, body: ByteBuffer)) throws -> EventLog.Read {
        let data = Data(answer.body.readableBytesView)
        if answer.status == 410, let gone = try? WireCoding.decoder().decode(Gone.self, from: data) {
            return .compacted(oldest: gone.error.oldestRevision, floor: gone.error.resumeSince)
        }
        if (400..<500).contains(answer.status) { throw Refused(body: String(decoding: data.prefix(2000), as: UTF8.self)) }
        guard answer.status == 200, let page = try? WireCoding.decoder().decode(EventPage.self, from: data) else {
            throw APIError(DozeError(.unavailable, "the leader answered HTTP \(answer.status) for the events: \(String(decoding: data.prefix(200), as: UTF8.self))"))
        }
        return .page(page)
    }
}

/// Server-sent events over long-polls: `fetch(since, wait)` answers a page at a time; each event goes out as
/// `id: REV` + `data: JSON`, a comment every empty wait keeps proxies (and the check for a gone client) busy.
enum EventStream {
    static let pollWait: Duration = .seconds(15)

    static func response(since: Int64?, retryFailures: Bool,
                         fetch: @escaping @Sendable (Int64?, Duration) async throws -> EventLog.Read) -> Response {
        let body = ResponseBody { writer in
            var since = since
            var failures = 0
            try await writer.write(ByteBuffer(string: "retry: 1000\n\n"))
            while !Task.isCancelled {
                let read: EventLog.Read
                let started = ContinuousClock.now
                do { read = try await fetch(since, pollWait) } catch let refused as EventQuery.Refused {
                    try await writer.write(ByteBuffer(string: "event: error\ndata: \(refused.body.replacingOccurrences(of: "\n", with: " "))\n\n"))
                    break
                } catch {
                    guard retryFailures, failures < 120 else { break }
                    // No leader for a moment (a failover): ask whoever leads next, from the same revision.
                    failures += 1
                    try await writer.write(ByteBuffer(string: ": waiting for a leader\n\n"))
                    try await Task.sleep(for: .milliseconds(500))
                    continue
                }
                failures = 0
                switch read {
                case .compacted(let oldest, let floor):
                    let gone = try WireCoding.encoder().encode(EventQuery.gone(oldest: oldest, floor: floor))
                    try await writer.write(ByteBuffer(string: "event: gone\ndata: \(String(decoding: gone, as: UTF8.self))\n\n"))
                    try await writer.finish(nil)
                    return
                case .page(let page):
                    var frames = ""
                    for event in page.events {
                        frames += "id: \(event.revision)\ndata: \(String(decoding: try WireCoding.encoder().encode(event), as: UTF8.self))\n\n"
                    }
                    if frames.isEmpty {
                        try await writer.write(ByteBuffer(string: ": no events\n\n"))
                        // An empty answer that came back early (a term ending) is not asked again in a tight loop.
                        if ContinuousClock.now - started < .milliseconds(200) { try await Task.sleep(for: .milliseconds(200)) }
                    } else {
                        try await writer.write(ByteBuffer(string: frames))
                    }
                    since = page.resume(after: since)
                }
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }
}
