import ClusterCore
import ClusterTestKit
import ClusterTransport
import Testing

@Suite struct UDPChannelTests {
    /// A manager summary for dozens of controllers is tens of KiB: it must arrive whole.
    @Test func largeDatagramsArriveWhole() async throws {
        let a = try await UDPChannel.bind(host: "127.0.0.1", port: 0)
        let b = try await UDPChannel.bind(host: "127.0.0.1", port: 0)
        let payload = (0..<40_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        a.send(payload, to: b.localEndpoint)
        let received = try await withTimeout(.seconds(5), "a 40 KB datagram") {
            for await d in b.incoming { return d.bytes }
            return []
        }
        #expect(received == payload)
        await a.close()
        await b.close()
    }
}
