import ClusterCore
import Crypto
import Foundation

/// Heartbeat datagrams: `DOZE1` (5 bytes) + HMAC-SHA256 (32 bytes) over the JSON that follows + JSON.
///
/// The JSON names its version, kind, sender and replay stamp. A datagram whose magic, MAC, version or JSON is
/// wrong is dropped with a reason, never trusted and never a crash: Snooze deserialised raw Java objects
/// from the network.
public struct HeartbeatCodec: Sendable {
    public static let magic: [UInt8] = Array("DOZE1".utf8)
    public static let version = 1
    public static let macLength = 32

    public enum DropReason: String, Error, Sendable, CaseIterable {
        case tooShort, badMagic, badMAC, malformed, unsupportedVersion
    }

    public struct Decoded: Sendable, Equatable {
        public var message: HeartbeatMessage
        public var sender: NodeID
        public var stamp: ReplayGuard.Stamp
        public init(message: HeartbeatMessage, sender: NodeID, stamp: ReplayGuard.Stamp) {
            self.message = message
            self.sender = sender
            self.stamp = stamp
        }
    }

    private let key: SymmetricKey

    public init(secret: String) {
        key = SymmetricKey(data: SHA256.hash(data: Data(secret.utf8)))
    }

    public func encode(_ message: HeartbeatMessage, sender: NodeID, stamp: ReplayGuard.Stamp) throws -> [UInt8] {
        let json = try JSONEncoder().encode(Envelope(v: Self.version, sender: sender, stamp: stamp, message: message))
        let mac = HMAC<SHA256>.authenticationCode(for: json, using: key)
        return Self.magic + Array(mac) + Array(json)
    }

    public func decode(_ bytes: some Collection<UInt8>) -> Result<Decoded, DropReason> {
        let bytes = Array(bytes)
        guard bytes.count > Self.magic.count + Self.macLength else { return .failure(.tooShort) }
        guard bytes.prefix(Self.magic.count).elementsEqual(Self.magic) else { return .failure(.badMagic) }
        let mac = bytes[Self.magic.count..<(Self.magic.count + Self.macLength)]
        let json = Data(bytes[(Self.magic.count + Self.macLength)...])
        guard HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: json, using: key) else { return .failure(.badMAC) }
        guard let envelope = try? WireCoding.decode(Envelope.self, from: json) else { return .failure(.malformed) }
        guard envelope.v == Self.version else { return .failure(.unsupportedVersion) }
        return .success(Decoded(message: envelope.message, sender: envelope.sender, stamp: envelope.stamp))
    }

    struct Envelope: Codable {
        var v: Int
        var sender: NodeID
        var stamp: ReplayGuard.Stamp
        var message: HeartbeatMessage
    }
}

extension HeartbeatMessage: Codable {
    enum Kind: String, Codable { case hello, leader, manager, controller, managerSummary }
    enum CodingKeys: String, CodingKey { case kind, member, leader, manager, controller, term, managerID, controllers }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        switch try c.decode(Kind.self, forKey: .kind) {
        case .hello: self = .hello(try c.decode(MemberInfo.self, forKey: .member), knownTerm: try c.decode(Term.self, forKey: .term))
        case .leader: self = .leader(try c.decode(LeaderInfo.self, forKey: .leader))
        case .manager: self = .manager(try c.decode(ManagerInfo.self, forKey: .manager), leaderTerm: try c.decode(Term.self, forKey: .term))
        case .controller:
            self = .controller(try c.decode(ControllerInfo.self, forKey: .controller), managerID: try c.decode(NodeID.self, forKey: .managerID))
        case .managerSummary:
            self = .managerSummary(try c.decode(ManagerInfo.self, forKey: .manager), term: try c.decode(Term.self, forKey: .term),
                                   controllers: try c.decode([ControllerInfo].self, forKey: .controllers))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .hello(let member, let term):
            try c.encode(Kind.hello, forKey: .kind); try c.encode(member, forKey: .member); try c.encode(term, forKey: .term)
        case .leader(let leader):
            try c.encode(Kind.leader, forKey: .kind); try c.encode(leader, forKey: .leader)
        case .manager(let manager, let term):
            try c.encode(Kind.manager, forKey: .kind); try c.encode(manager, forKey: .manager); try c.encode(term, forKey: .term)
        case .controller(let info, let managerID):
            try c.encode(Kind.controller, forKey: .kind); try c.encode(info, forKey: .controller); try c.encode(managerID, forKey: .managerID)
        case .managerSummary(let manager, let term, let controllers):
            try c.encode(Kind.managerSummary, forKey: .kind); try c.encode(manager, forKey: .manager)
            try c.encode(term, forKey: .term); try c.encode(controllers, forKey: .controllers)
        }
    }
}
