import ClusterTransport
import HummingbirdCore
import Logging
import NIOCore

/// Hummingbird's HTTP/1 server with `RequestLineRewriterHandler` in front of the parser, so Snooze clients that
/// send `POST groupmanager?op HTTP/1.1` (no leading slash) are served instead of refused with a 400.
public struct LenientHTTP1Channel: ServerChildChannel {
    public typealias Value = HTTP1Channel.Value
    let inner: HTTP1Channel

    public init(responder: @escaping HTTPChannelHandler.Responder) {
        inner = HTTP1Channel(responder: responder)
    }

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
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
    /// HTTP/1.1 that also accepts request targets without their leading slash.
    public static var lenientHTTP1: HTTPServerBuilder {
        .init { responder in LenientHTTP1Channel(responder: responder) }
    }
}
