import ClusterTransport
import Foundation
import HTTPTypes
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypes
import Synchronization

/// What one node's HTTP server tolerates from its clients. Every role's server has the same guards: a request
/// must arrive whole (head and body) within `readTimeout` of its first byte, a kept-alive connection with no
/// request is closed after `idleTimeout`, and beyond `maxConnections` open at once a new connection gets a 503
/// and is closed. Without them a client that opens connections and sends nothing held a file descriptor each,
/// until the process could accept nothing at all. A request head (request line and headers) longer than
/// `maxHeadBytes` gets a 414 or 431 with the JSON error and is closed, rather than NIO's bare 400 at 80 KiB.
public struct HTTPServerLimits: Sendable, Equatable {
    public var readTimeout: Duration = .seconds(10)
    public var idleTimeout: Duration = .seconds(30)
    public var maxConnections: Int = 4096
    public var maxHeadBytes: Int = 64 << 10

    public init(readTimeout: Duration = .seconds(10), idleTimeout: Duration = .seconds(30), maxConnections: Int = 4096,
                maxHeadBytes: Int = 64 << 10) {
        self.readTimeout = readTimeout
        self.idleTimeout = idleTimeout
        self.maxConnections = maxConnections
        self.maxHeadBytes = maxHeadBytes
    }

    /// The cap actually used: never so close to the open-file limit that accepting, libvirt or logging fail first.
    public var effectiveMaxConnections: Int {
        let files = FileLimits.openFiles()
        return max(16, min(maxConnections, files - 256))
    }
}

/// The process's open-file limit, raised once to the hard limit (systemd and shells often leave the soft one at 1024).
public enum FileLimits {
    private static let raised: Int = {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        if limit.rlim_cur < limit.rlim_max {
            var wanted = limit
            wanted.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &wanted) == 0 { limit = wanted }
        }
        return Int(clamping: min(limit.rlim_cur, 1 << 20))
    }()

    public static func openFiles() -> Int { raised }
}

/// Counts one server's open connections; shared by all its event loops.
public final class ConnectionCounter: Sendable {
    let limit: Int
    private let open = Atomic<Int>(0)
    /// The most open at once since memory was last handed back.
    private let peak = Atomic<Int>(0)

    public init(limit: Int) { self.limit = limit }

    public var current: Int { open.load(ordering: .relaxed) }

    /// Takes a slot, or answers false when all `limit` are taken.
    func acquire() -> Bool {
        let now = open.wrappingAdd(1, ordering: .relaxed).newValue
        guard now <= limit else {
            open.wrappingSubtract(1, ordering: .relaxed)
            return false
        }
        peak.max(now, ordering: .relaxed)
        return true
    }

    func release() {
        let now = open.wrappingSubtract(1, ordering: .relaxed).newValue
        // After a flood the freed buffers stay in malloc's arenas: hand them back to the system once it is over.
        if now <= 8, peak.load(ordering: .relaxed) >= 256, peak.exchange(now, ordering: .relaxed) >= 256 {
            MemoryTrim.trim()
        }
    }
}

enum MemoryTrim {
    static func trim() {
        #if os(Linux)
        _ = glibcMallocTrim(0)
        #endif
    }
}

#if os(Linux)
/// glibc's `malloc_trim` (not in the Glibc module map): returns free heap memory to the system.
@_silgen_name("malloc_trim")
private func glibcMallocTrim(_ pad: Int) -> Int32
#endif

/// Per-connection deadlines, in bytes: the first handler of the pipeline, ahead of the request-line rewriter and
/// NIO's parser, so a request head that never ends is timed too. `RequestEndHandler` (after the parser) tells it
/// when a request has been read whole and when its answer is out.
final class ConnectionGuardHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    enum Phase { case idle, reading, handling }

    /// How far the head of the request being read has come, counted in bytes before the parser sees them.
    struct HeadScan {
        var bytes = 0
        var newlines = 0
        var sawLineEnd = false
        var done = false

        enum Outcome { case partial, complete, tooLong(inRequestLine: Bool) }

        /// A head ends at the first empty line (CRLF CRLF, or bare LF LF as lenient clients send).
        mutating func scan(_ view: ByteBufferView, limit: Int) -> Outcome {
            for byte in view {
                bytes += 1
                if byte == UInt8(ascii: "\n") {
                    sawLineEnd = true
                    newlines += 1
                    if newlines == 2 {
                        done = true
                        return .complete
                    }
                } else if byte != UInt8(ascii: "\r") {
                    newlines = 0
                }
                if bytes > limit { return .tooLong(inRequestLine: !sawLineEnd) }
            }
            return .partial
        }
    }

    let limits: HTTPServerLimits
    let counter: ConnectionCounter
    private var counted = false
    private var refused = false
    private var phase = Phase.idle
    private var head = HeadScan()
    private var timer: Scheduled<Void>?
    private var context: ChannelHandlerContext?

    init(limits: HTTPServerLimits, counter: ConnectionCounter) {
        self.limits = limits
        self.counter = counter
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        guard counter.acquire() else {
            Self.refuse(context, status: "503 Service Unavailable", code: "unavailable",
                        message: "this node has \(counter.limit) connections open, its limit; retry later")
            return
        }
        counted = true
        arm(limits.idleTimeout, context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        finish()
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard counted, !refused else { return }   // refused: whatever it sends is dropped
        if phase == .idle {
            phase = .reading
            head = HeadScan()
            arm(limits.readTimeout, context: context)
        }
        if phase == .reading, !head.done,
           case .tooLong(let inRequestLine) = head.scan(unwrapInboundIn(data).readableBytesView, limit: limits.maxHeadBytes) {
            refused = true
            timer?.cancel()
            timer = nil
            if inRequestLine {
                Self.refuse(context, status: "414 URI Too Long", code: "uriTooLong",
                            message: "the request line is longer than \(limits.maxHeadBytes) bytes")
            } else {
                Self.refuse(context, status: "431 Request Header Fields Too Large", code: "headersTooLarge",
                            message: "the request head is longer than \(limits.maxHeadBytes) bytes")
            }
            return
        }
        context.fireChannelRead(data)
    }

    /// The parser has the whole request: no deadline while the node works on it (a migration may take minutes).
    func requestRead() {
        guard phase == .reading else { return }
        phase = .handling
        timer?.cancel()
        timer = nil
    }

    /// The answer is written: the connection idles until the next request.
    func responseWritten() {
        guard let context else { return }
        phase = .idle
        arm(limits.idleTimeout, context: context)
    }

    private func arm(_ timeout: Duration, context: ChannelHandlerContext) {
        timer?.cancel()
        let loop = context.eventLoop.assumeIsolatedUnsafeUnchecked()
        timer = loop.scheduleTask(in: TimeAmount(timeout)) { [self] in
            timer = nil
            switch phase {
            case .reading:
                Self.refuse(context, status: "408 Request Timeout", code: "requestTimeout",
                            message: "the request was not received whole within \(limits.readTimeout)")
            case .idle:
                context.close(promise: nil)
            case .handling:
                break
            }
        }
    }

    private func finish() {
        timer?.cancel()
        timer = nil
        context = nil
        if counted {
            counted = false
            counter.release()
        }
    }

    /// A whole HTTP answer written past the parser (nothing else has been written on this connection), then close.
    static func refuse(_ context: ChannelHandlerContext, status: String, code: String, message: String) {
        let body = #"{"error":{"code":"\#(code)","message":"\#(message)"}}"#
        let text = "HTTP/1.1 \(status)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        let buffer = context.channel.allocator.buffer(string: text)
        context.writeAndFlush(NIOAny(buffer)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }
}

/// After the HTTP parser: reports each request read whole and each answer written to the connection's guard,
/// and answers HEAD as GET without the body (RFC 9110 §9.3.2: same status and headers, Content-Length
/// included). Done here, before routing, so every GET route answers HEAD too.
final class RequestEndHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private var guardHandler: ConnectionGuardHandler?
    /// For each request read and not yet answered, in order: was it a HEAD?
    private var heads: [Bool] = []
    /// The request being answered has not been read whole (its head came, its end did not).
    private var readingBody = false
    /// An answer went out before its request's body was read (a 413, a 400 at the head): the rest of that body
    /// would only be drained, so the connection is closed once the answer is written.
    private var closeAfterAnswer = false

    func handlerAdded(context: ChannelHandlerContext) {
        guardHandler = try? context.pipeline.syncOperations.handler(type: ConnectionGuardHandler.self)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(var request):
            let isHead = request.method == .head
            heads.append(isHead)
            readingBody = true
            guard isHead else { break }
            request.method = .get
            context.fireChannelRead(wrapInboundOut(.head(request)))
            return
        case .end:
            readingBody = false
            guardHandler?.requestRead()
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let answeringHead = heads.first ?? false
        switch unwrapOutboundIn(data) {
        case .head(var response):
            if readingBody {
                closeAfterAnswer = true
                response.headerFields[.connection] = "close"
            }
            if answeringHead { response.headerFields[.transferEncoding] = nil }   // no chunks follow
            context.write(wrapOutboundOut(.head(response)), promise: promise)
            return
        case .body where answeringHead:
            promise?.succeed()
            return
        case .end:
            if !heads.isEmpty { heads.removeFirst() }
            if closeAfterAnswer {
                let written = promise ?? context.eventLoop.makePromise()
                context.write(data, promise: written)
                written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
                return
            }
            guardHandler?.responseWritten()
        default:
            break
        }
        context.write(data, promise: promise)
    }
}

/// Hummingbird's HTTP/1 server with `RequestLineRewriterHandler` in front of the parser, so Snooze clients that
/// send `POST groupmanager?op HTTP/1.1` (no leading slash) are served instead of refused with a 400, and the
/// connection guards of `HTTPServerLimits` in front of everything.
public struct LenientHTTP1Channel: ServerChildChannel {
    public typealias Value = HTTP1Channel.Value
    let inner: HTTP1Channel
    let limits: HTTPServerLimits
    let counter: ConnectionCounter

    public init(responder: @escaping HTTPChannelHandler.Responder, limits: HTTPServerLimits, counter: ConnectionCounter) {
        inner = HTTP1Channel(responder: responder, configuration: .init(additionalChannelHandlers: [RequestEndHandler()]))
        self.limits = limits
        self.counter = counter
    }

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(ConnectionGuardHandler(limits: limits, counter: counter))
            try channel.pipeline.syncOperations.addHandler(RequestLineRewriterHandler())
        }.flatMap {
            inner.setup(channel: channel, logger: logger)
        }
    }

    public func handle(value: Value, logger: Logger) async {
        await inner.handle(value: value, logger: logger)
    }
}

extension HTTPServerBuilder {
    /// HTTP/1.1 that also accepts request targets without their leading slash, with the default limits.
    public static var lenientHTTP1: HTTPServerBuilder { lenientHTTP1(limits: HTTPServerLimits()) }

    /// HTTP/1.1 that also accepts request targets without their leading slash, guarded by `limits`.
    public static func lenientHTTP1(limits: HTTPServerLimits) -> HTTPServerBuilder {
        let counter = ConnectionCounter(limit: limits.effectiveMaxConnections)
        return .init { responder in LenientHTTP1Channel(responder: responder, limits: limits, counter: counter) }
    }
}
