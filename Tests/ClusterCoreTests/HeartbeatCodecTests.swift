import ClusterCore
import ClusterWire
import Testing

@Suite struct HeartbeatCodecTests {
    let codec = HeartbeatCodec(secret: "cluster-secret")
    let leader = HeartbeatMessage.leader(LeaderInfo(id: "gl", term: 7, control: Endpoint(host: "127.0.0.1", port: 5001),
                                                    heartbeat: Endpoint(host: "127.0.0.1", port: 5001)))

    @Test func roundTripsEveryKind() throws {
        let e = Endpoint(host: "10.0.0.1", port: 9)
        let c = ControllerInfo(id: "lc", control: e, heartbeat: e, summary: CapacitySummary(vmCount: 2), vms: ["a", "b"])
        let m = ManagerInfo(id: "gm", control: e, heartbeat: e)
        for message in [leader, .manager(m, leaderTerm: 3), .controller(c, managerID: "gm"), .managerSummary(m, term: 3, controllers: [c]),
                        .hello(MemberInfo(id: "x", role: .localController, control: e, heartbeat: e), knownTerm: 2)] {
            let bytes = try codec.encode(message, sender: "s", stamp: .init(incarnation: 1, sequence: 2))
            #expect(try codec.decode(bytes).get() == HeartbeatCodec.Decoded(message: message, sender: "s", stamp: .init(incarnation: 1, sequence: 2)))
        }
    }

    @Test func forgedTamperedAndGarbageAreDroppedWithAReason() throws {
        let forged = try HeartbeatCodec(secret: "wrong").encode(leader, sender: "evil", stamp: .init(incarnation: 1, sequence: 1))
        #expect(codec.decode(forged) == .failure(.badMAC))
        var tampered = try codec.encode(leader, sender: "gl", stamp: .init(incarnation: 1, sequence: 1))
        tampered[tampered.count - 3] ^= 0x01
        #expect(codec.decode(tampered) == .failure(.badMAC))
        #expect(codec.decode([UInt8]()) == .failure(.tooShort))
        #expect(codec.decode(Array(repeating: 0x41, count: 100)) == .failure(.badMagic))
        #expect(codec.decode(Array("DOZE1".utf8) + Array(repeating: 0, count: 40)) == .failure(.badMAC))
    }
}

extension Result where Success == HeartbeatCodec.Decoded, Failure == HeartbeatCodec.DropReason {
    static func == (l: Self, r: Self) -> Bool {
        switch (l, r) {
        case (.success(let a), .success(let b)): return a == b
        case (.failure(let a), .failure(let b)): return a == b
        default: return false
        }
    }
}
