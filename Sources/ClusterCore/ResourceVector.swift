/// A capacity or demand in explicit units.
///
/// Snooze passed these around as positional `[cpu, memory KiB, rx, tx]` arrays and once swapped rx and tx
/// (snooze.md §9 #13); here every field has a name and the positional form exists only at the wire edge.
public struct ResourceVector: Sendable, Hashable, Codable {
    public var vcpus: Double
    public var memoryKiB: Double
    public var rxBytes: Double
    public var txBytes: Double

    public init(vcpus: Double = 0, memoryKiB: Double = 0, rxBytes: Double = 0, txBytes: Double = 0) {
        self.vcpus = vcpus
        self.memoryKiB = memoryKiB
        self.rxBytes = rxBytes
        self.txBytes = txBytes
    }

    public static let zero = ResourceVector()

    /// Snooze's wire order: `[vcpus, memory KiB, rx, tx]`.
    public var snoozeArray: [Double] { [vcpus, memoryKiB, rxBytes, txBytes] }

    /// Reads Snooze's positional form; missing entries are zero.
    public init(snoozeArray a: [Double]) {
        self.init(vcpus: a.count > 0 ? a[0] : 0, memoryKiB: a.count > 1 ? a[1] : 0,
                  rxBytes: a.count > 2 ? a[2] : 0, txBytes: a.count > 3 ? a[3] : 0)
    }

    public static func + (l: Self, r: Self) -> Self {
        .init(vcpus: l.vcpus + r.vcpus, memoryKiB: l.memoryKiB + r.memoryKiB,
              rxBytes: l.rxBytes + r.rxBytes, txBytes: l.txBytes + r.txBytes)
    }

    public static func - (l: Self, r: Self) -> Self {
        .init(vcpus: l.vcpus - r.vcpus, memoryKiB: l.memoryKiB - r.memoryKiB,
              rxBytes: l.rxBytes - r.rxBytes, txBytes: l.txBytes - r.txBytes)
    }
}
