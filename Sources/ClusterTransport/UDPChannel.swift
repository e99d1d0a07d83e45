import ClusterCore
import NIOCore
import NIOPosix

/// One UDP socket for heartbeats: sends datagrams to endpoints and yields what arrives.
/// NIO stays inside this module; callers see `async` functions and an `AsyncStream`.
public final class UDPChannel: Sendable {
    public struct Datagram: Sendable {
        public var bytes: [UInt8]
        public var from: Endpoint
    }

    private let channel: any Channel
    public let incoming: AsyncStream<Datagram>
    public let localEndpoint: Endpoint

    private init(channel: any Channel, incoming: AsyncStream<Datagram>, local: Endpoint) {
        self.channel = channel
        self.incoming = incoming
        self.localEndpoint = local
    }

    /// Binds `host:port` (port 0 picks one). With `multicastGroup`, also joins that group (e.g. Snooze's 225.4.5.6).
    public static func bind(host: String, port: Int, multicastGroup: String? = nil) async throws -> UDPChannel {
        let (stream, continuation) = AsyncStream<Datagram>.makeStream(bufferingPolicy: .bufferingNewest(8192))
        let channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Receiver(continuation)) }
            }
            .bind(host: multicastGroup ?? host, port: port)
            .get()
        if let multicastGroup, let multicast = channel as? any MulticastChannel {
            let group = try SocketAddress(ipAddress: multicastGroup, port: channel.localAddress?.port ?? port)
            let devices = (try? await MultiThreadedEventLoopGroup.singleton.next().makeSucceededVoidFuture()
                .flatMapThrowing { try System.enumerateDevices() }.get()) ?? []
            let interface = devices.first { $0.address?.ipAddress == host }
            try await multicast.joinGroup(group, device: interface).get()
        }
        let local = Endpoint(host: host, port: channel.localAddress?.port ?? port)
        channel.closeFuture.whenComplete { _ in continuation.finish() }
        return UDPChannel(channel: channel, incoming: stream, local: local)
    }

    /// Best effort, like every datagram: an unreachable or unresolvable peer is skipped.
    public func send(_ bytes: [UInt8], to endpoint: Endpoint) {
        guard let address = try? SocketAddress.makeAddressResolvingHost(endpoint.host, port: endpoint.port) else { return }
        let envelope = AddressedEnvelope(remoteAddress: address, data: channel.allocator.buffer(bytes: bytes))
        channel.writeAndFlush(envelope, promise: nil)
    }

    public func close() async {
        try? await channel.close()
    }

    private final class Receiver: ChannelInboundHandler, Sendable {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        let continuation: AsyncStream<Datagram>.Continuation
        init(_ continuation: AsyncStream<Datagram>.Continuation) { self.continuation = continuation }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            let from = Endpoint(host: envelope.remoteAddress.ipAddress ?? "?", port: envelope.remoteAddress.port ?? 0)
            continuation.yield(Datagram(bytes: Array(envelope.data.readableBytesView), from: from))
        }

        // A refused datagram (ICMP port unreachable) must not close the socket.
        func errorCaught(context: ChannelHandlerContext, error: any Error) {}
    }
}
