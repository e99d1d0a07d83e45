import Foundation

/// A temporary directory removed when the test ends (call `remove()` in a `defer`).
public struct TemporaryDirectory: Sendable {
    public let path: String

    public init(prefix: String = "doze-test") throws {
        let template = FileManager.default.temporaryDirectory.path + "/\(prefix)-XXXXXX"
        var bytes = Array(template.utf8CString)
        guard let made = mkdtemp(&bytes) else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        path = String(cString: made)
    }

    public func remove() { try? FileManager.default.removeItem(atPath: path) }

    public func file(_ name: String) -> String { path + "/" + name }
}

/// Writes libvirt test-driver host files: each `test:///<file>` open is an isolated in-memory host.
public enum TestHostFile {
    public struct Domain: Sendable {
        public var name: String
        public var vcpus: Int
        public var memoryMiB: Int
        public var running: Bool
        public init(name: String, vcpus: Int = 1, memoryMiB: Int = 256, running: Bool = true) {
            self.name = name
            self.vcpus = vcpus
            self.memoryMiB = memoryMiB
            self.running = running
        }
    }

    /// Writes a host with `cpus` CPUs and `memoryMiB` of memory, plus the given domains; returns its URI.
    @discardableResult
    public static func write(to path: String, cpus: Int = 8, memoryMiB: Int = 16384, domains: [Domain] = []) throws -> String {
        var xml = """
            <node xmlns:test="http://libvirt.org/schemas/domain/test/1.0">
              <cpu><mhz>2400</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets><cores>\(cpus)</cores><threads>1</threads><active>\(cpus)</active></cpu>
              <memory>\(memoryMiB * 1024)</memory>

            """
        for domain in domains {
            xml += """
                  <domain type="test"><name>\(domain.name)</name><memory unit="MiB">\(domain.memoryMiB)</memory><vcpu>\(domain.vcpus)</vcpu>
                    <os><type>hvm</type></os>
                    <devices><interface type="network"><source network="default"/><target dev="vnet-\(domain.name)"/></interface></devices>
                    \(domain.running ? "" : "<test:runstate>5</test:runstate>")</domain>

                """
        }
        xml += "</node>\n"
        try xml.write(toFile: path, atomically: true, encoding: .utf8)
        return "test://" + path
    }

    /// A minimal domain XML.
    public static func domainXML(name: String, type: String = "test", vcpus: Int = 1, memoryMiB: Int = 128,
                                 devices: String = "") -> String {
        """
        <domain type='\(type)'><name>\(name)</name><memory unit='MiB'>\(memoryMiB)</memory><vcpu>\(vcpus)</vcpu>\
        <os><type>hvm</type></os><devices>\(devices)</devices></domain>
        """
    }
}

public struct TimeoutError: Error, CustomStringConvertible {
    public let what: String
    public init(what: String) { self.what = what }
    public var description: String { "timed out: \(what)" }
}

/// Runs `body`, failing with `TimeoutError` if it takes longer than `limit`. Every wait in a test is bounded.
public func withTimeout<T: Sendable>(_ limit: Duration, _ what: String = "operation",
                                     _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            throw TimeoutError(what: what)
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}

/// Polls `condition` every 20 ms until it holds, for at most `limit`.
public func eventually(_ limit: Duration = .seconds(5), _ what: String = "condition",
                       _ condition: @escaping @Sendable () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + limit
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    throw TimeoutError(what: what)
}
