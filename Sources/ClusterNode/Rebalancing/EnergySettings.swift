import ClusterCore

/// Energy saving (issue 12): on only when both agents are given.
public struct EnergySettings: Sendable {
    /// Run with the host's id and control address appended; exit 0 once the host is down.
    public var powerOffCommand: String?
    /// Run the same way; exit 0 once the host is starting (it counts as on when its controller is heard).
    public var wakeCommand: String?
    public var saver = EnergySaver.Settings()
    /// The most an agent may run.
    public var agentTimeout: Duration = .seconds(120)
    /// How often the energy saver looks at the hosts.
    public var interval: Duration = .seconds(1)

    public var enabled: Bool { powerOffCommand != nil && wakeCommand != nil }

    public init() {}
}
