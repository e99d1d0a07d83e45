import ClusterCore
import Foundation

/// The controller's own settings that users change through the API; kept in `STATE/controller.json`.
struct ControllerConfiguration: Codable, Sendable, Equatable {
    struct Network: Codable, Sendable, Equatable {
        var bridge: String = "br100"
        var bridgeInterface: String = "eth0"
    }
    struct ImagePool: Codable, Sendable, Equatable {
        var path: String
        var maxGB: Int = 1000
    }

    var id: String
    /// nil until a user sets one: the host's own size is the limit.
    var quota: HostQuota?
    var network = Network()
    var imagePool: ImagePool
    var pools: [VolumePool] = []
    /// Drained hosts take no new VMs (`doze host drain`); kept here so a restart does not undo it.
    var draining: Bool? = nil
}

/// Reads and atomically rewrites a JSON file.
struct JSONFile<Value: Codable>: Sendable {
    let path: String

    func load() throws -> Value? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return try JSONDecoder().decode(Value.self, from: data)
    }

    func save(_ value: Value) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(value)
        let tmp = path + ".tmp"
        try data.write(to: URL(fileURLWithPath: tmp))
        guard rename(tmp, path) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    }
}
