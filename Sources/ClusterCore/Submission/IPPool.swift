/// An IPv4 subnet pool (Snooze's `network.virtualMachineSubnet`): hands out each address once until released.
/// The network, gateway (first host) and broadcast addresses are never handed out. Pure value type; the shell
/// persists `allocated` where the next leader finds it.
public struct IPPool: Sendable, Equatable, Codable {
    public let subnet: String
    public let network: UInt32
    public let prefixLength: Int
    public private(set) var allocated: [UInt32: String] = [:]   // address → VM id
    private var cursor: UInt32

    public enum Failure: Error, Equatable {
        case invalidSubnet(String)
        case exhausted(subnet: String)
    }

    public init(subnet: String) throws(Failure) {
        let parts = subnet.split(separator: "/")
        guard parts.count == 2, let prefix = Int(parts[1]), (8...30).contains(prefix), let base = IPPool.parse(String(parts[0])) else {
            throw .invalidSubnet(subnet)
        }
        let mask: UInt32 = prefix == 0 ? 0 : ~UInt32(0) << (32 - prefix)
        self.subnet = subnet
        self.network = base & mask
        self.prefixLength = prefix
        self.cursor = (base & mask) + 2
    }

    var size: UInt32 { UInt32(1) << (32 - prefixLength) }
    /// Usable VM addresses: all but network, gateway (.1) and broadcast.
    public var capacity: Int { Int(size) - 3 }
    public var free: Int { capacity - allocated.count }

    /// The next free address after the last one handed out (so a released address is not reused at once).
    public mutating func allocate(for vm: String) throws(Failure) -> String {
        if let existing = allocated.first(where: { $0.value == vm }) { return IPPool.format(existing.key) }
        guard free > 0 else { throw .exhausted(subnet: subnet) }
        let first = network + 2, last = network + size - 2
        var candidate = cursor
        while allocated[candidate] != nil {
            candidate = candidate >= last ? first : candidate + 1
        }
        allocated[candidate] = vm
        cursor = candidate >= last ? first : candidate + 1
        return IPPool.format(candidate)
    }

    /// Releases the address of `vm` (a VM that ended, or whose submission failed).
    public mutating func release(vm: String) {
        for (address, owner) in allocated where owner == vm { allocated[address] = nil }
    }

    /// Marks an address taken (a running VM reported by a manager after a failover).
    public mutating func reserve(_ address: String, for vm: String) {
        guard let value = IPPool.parse(address), value > network + 1, value < network + size - 1 else { return }
        allocated[value] = vm
    }

    public static func parse(_ text: String) -> UInt32? {
        let octets = text.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4 else { return nil }
        var value: UInt32 = 0
        for octet in octets {
            guard let number = UInt32(octet), number <= 255, !octet.isEmpty, octet.count <= 3 else { return nil }
            value = value << 8 | number
        }
        return value
    }

    public static func format(_ value: UInt32) -> String {
        "\(value >> 24).\(value >> 16 & 0xFF).\(value >> 8 & 0xFF).\(value & 0xFF)"
    }

    /// A locally administered MAC derived from the IP (Snooze's `54:56` + the four octets), always two hex
    /// digits per octet: Snooze wrote `54:56:c0:a8:7a:6`, which no NIC accepts.
    public static func mac(for address: String) -> String? {
        guard let value = parse(address) else { return nil }
        let octets = [0x54, 0x56, value >> 24, value >> 16 & 0xFF, value >> 8 & 0xFF, value & 0xFF]
        return octets.map { octet in
            let hex = String(octet, radix: 16)
            return hex.count == 1 ? "0" + hex : hex
        }.joined(separator: ":")
    }
}
