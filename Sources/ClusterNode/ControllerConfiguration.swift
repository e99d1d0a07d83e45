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

/// The controller's configuration and the file it lives in: a change counts only once it is written, so a
/// change that cannot be written is not made.
struct ControllerConfigStore: Sendable {
    private let file: JSONFile<ControllerConfiguration>
    private(set) var current: ControllerConfiguration

    /// The state directory's configuration, or a new one (a fresh id, the image pool inside the state directory),
    /// written back at once.
    static func open(stateDirectory: String) throws -> ControllerConfigStore {
        let file = JSONFile<ControllerConfiguration>(path: stateDirectory + "/controller.json")
        let defaultImages = stateDirectory + "/images"
        var config = try file.load() ?? ControllerConfiguration(
            id: UUID().uuidString.lowercased(), imagePool: .init(path: defaultImages))
        if config.imagePool.path == defaultImages {
            try FileManager.default.createDirectory(atPath: defaultImages, withIntermediateDirectories: true)
        }
        if config.id.isEmpty { config.id = UUID().uuidString.lowercased() }
        try file.save(config)
        return ControllerConfigStore(file: file, current: config)
    }

    mutating func update(_ change: (inout ControllerConfiguration) -> Void) throws(DozeError) {
        var next = current
        change(&next)
        do { try file.save(next) } catch {
            throw DozeError(.unavailable, "cannot write \(file.path): \(error)")
        }
        current = next
    }
}
