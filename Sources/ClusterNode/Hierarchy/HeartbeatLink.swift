import ClusterCore
import ClusterTransport
import ClusterWire
import Foundation
import Logging

/// A node's heartbeat socket: signs and stamps what it sends; verifies, de-duplicates and counts what it drops.
actor HeartbeatLink {
    nonisolated let me: NodeID
    nonisolated let channel: UDPChannel
    /// The shared multicast socket, when the cluster uses one; what arrives there is verified the same way.
    nonisolated let multicast: UDPChannel?
    private let codec: HeartbeatCodec
    /// Higher at every start of the node (`NodeIdentity.nextIncarnation`): a restarted node's stamps are newer
    /// than anything it sent before, even when the clock went back.
    private let incarnation: UInt64
    private var sequence: UInt64 = 0
    private var replay = ReplayGuard()
    private(set) var dropped: [String: Int] = [:]
    private(set) var sent = 0
    private(set) var accepted = 0
    /// The raw bytes of the last accepted leader announcement (bootstraps relay them verbatim).
    private(set) var lastLeaderDatagram: (term: Term, bytes: [UInt8])?

    init(me: NodeID, channel: UDPChannel, multicast: UDPChannel? = nil, secret: String,
         incarnation: UInt64) {
        self.me = me
        self.incarnation = incarnation
        self.channel = channel
        self.multicast = multicast
        self.codec = HeartbeatCodec(secret: secret)
    }

    func send(_ message: HeartbeatMessage, to endpoints: some Sequence<Endpoint>) {
        sequence += 1
        guard let bytes = try? codec.encode(message, sender: me, stamp: .init(incarnation: incarnation, sequence: sequence)) else { return }
        guard bytes.count <= UDPChannel.maxDatagram else {
            // A manager summary with a few hundred controllers; counted, so it shows in the statistics.
            count("oversizeSent")
            return
        }
        for endpoint in endpoints {
            channel.send(bytes, to: endpoint)
            sent += 1
        }
    }

    func sendRaw(_ bytes: [UInt8], to endpoint: Endpoint) {
        channel.send(bytes, to: endpoint)
        sent += 1
    }

    func count(_ reason: String) { dropped[reason, default: 0] += 1 }

    /// Verifies one datagram; nil (and a count) when it is dropped.
    func accept(_ bytes: [UInt8]) -> HeartbeatCodec.Decoded? {
        switch codec.decode(bytes) {
        case .failure(let reason):
            count(reason.rawValue)
            return nil
        case .success(let decoded):
            guard decoded.sender != me else { return nil }   // our own multicast echo
            guard replay.accept(decoded.stamp, from: decoded.sender) else {
                count("replayed")
                return nil
            }
            accepted += 1
            if case .leader(let announced) = decoded.message, announced.term >= (lastLeaderDatagram?.term ?? 0) {
                lastLeaderDatagram = (announced.term, bytes)
            }
            return decoded
        }
    }

    /// Accepted messages, in arrival order, until the socket closes.
    nonisolated func messages() -> AsyncStream<HeartbeatCodec.Decoded> {
        AsyncStream { continuation in
            let task = Task {
                await withTaskGroup(of: Void.self) { group in
                    for source in [channel, multicast].compactMap({ $0 }) {
                        group.addTask {
                            for await datagram in source.incoming {
                                if let decoded = await self.accept(datagram.bytes) { continuation.yield(decoded) }
                            }
                        }
                    }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    var statistics: [String: Int] {
        var counters = dropped.mapKeys { "dropped_\($0)" }
        counters["sent"] = sent
        counters["accepted"] = accepted
        return counters
    }
}

extension HeartbeatLink {
    /// A role's two loops, until cancelled: every accepted message to `receive`, and `tick` every `interval`.
    nonisolated func drive(interval: Duration, receive: @escaping @Sendable (HeartbeatCodec.Decoded) async -> Void,
                           tick: @escaping @Sendable () async -> Void) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await message in self.messages() { await receive(message) }
            }
            group.addTask {
                while !Task.isCancelled {
                    await tick()
                    try? await Task.sleep(for: interval)
                }
            }
            await group.next()
            group.cancelAll()
        }
    }
}

extension Dictionary {
    func mapKeys<K: Hashable>(_ transform: (Key) -> K) -> [K: Value] {
        Dictionary<K, Value>(uniqueKeysWithValues: map { (transform($0.key), $0.value) })
    }
}
