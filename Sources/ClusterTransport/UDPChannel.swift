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

    /// The largest UDP payload. NIO reads datagrams into 2 KiB buffers by default and silently truncates the
    /// rest, which turned every summary of a manager with more than a few controllers into a MAC failure.
    public static let maxDatagram = 65_507

    private let channel: any Channel
    public let incoming: AsyncStream<Datagram>
    public let localEndpoint: Endpoint

    private init(channel: any Channel, incoming: AsyncStream<Datagram>, local: Endpoint) {
        self.channel = channel
        self.incoming = incoming
        self.localEndpoint = local
    }

    /// Binds `host:port` (port 0 picks one) for unicast heartbeats. With `multicastInterface`, datagrams this
    /// socket sends to a multicast group leave through that interface (loopback has no multicast route).
    public static func bind(host: String, port: Int, multicastInterface: Bool = false) async throws -> UDPChannel {
        let (stream, continuation) = AsyncStream<Datagram>.makeStream(bufferingPolicy: .bufferingNewest(8192))
        let bootstrap = DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: UDPChannel.maxDatagram))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Receiver(continuation)) }
            }
        let channel = try await bootstrap.bind(host: host, port: port).get()
        if multicastInterface, let options = channel as? any SocketOptionProvider {
            try await options.setIPMulticastIF(in_addr(s_addr: inet_addr(host))).get()
        }
        let local = Endpoint(host: host, port: channel.localAddress?.port ?? port)
        channel.closeFuture.whenComplete { _ in continuation.finish() }
        return UDPChannel(channel: channel, incoming: stream, local: local)
    }

    /// Listens to multicast `group` (e.g. Snooze's 225.4.5.6:9000) on the interface that has `interfaceAddress`.
    /// Every node on a machine binds the same port (SO_REUSEPORT) and each receives every datagram.
    public static func joinMulticast(group: Endpoint, interfaceAddress: String) async throws -> UDPChannel {
        let (stream, continuation) = AsyncStream<Datagram>.makeStream(bufferingPolicy: .bufferingNewest(8192))
        let channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelOption(.socketOption(NIOBSDSocket.Option(rawValue: SO_REUSEPORT)), value: 1)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: UDPChannel.maxDatagram))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Receiver(continuation)) }
            }
            .bind(host: "0.0.0.0", port: group.port)
            .get()
        // IP_ADD_MEMBERSHIP by hand: NIO's joinGroup refuses devices without IFF_MULTICAST, such as `lo`, on which
        // the kernel delivers multicast perfectly well between local sockets.
        guard let options = channel as? any SocketOptionProvider else { throw ChannelError.operationUnsupported }
        let membership = ip_mreq(imr_multiaddr: in_addr(s_addr: inet_addr(group.host)), imr_interface: in_addr(s_addr: inet_addr(interfaceAddress)))
        try await options.unsafeSetSocketOption(level: .init(rawValue: Int32(IPPROTO_IP)), name: .init(rawValue: IP_ADD_MEMBERSHIP),
                                                value: membership).get()
        channel.closeFuture.whenComplete { _ in continuation.finish() }
        return UDPChannel(channel: channel, incoming: stream, local: group)
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
