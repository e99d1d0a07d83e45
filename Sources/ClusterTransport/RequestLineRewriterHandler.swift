import NIOCore

/// `RequestLineRewriter` as the first inbound handler of an HTTP/1 connection, ahead of NIO's parser.
public final class RequestLineRewriterHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer

    private var rewriter = RequestLineRewriter()

    public init() {}

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        let out = rewriter.feed(buffer.readableBytesView)
        guard !out.isEmpty else { return }
        context.fireChannelRead(wrapInboundOut(context.channel.allocator.buffer(bytes: out)))
    }
}
