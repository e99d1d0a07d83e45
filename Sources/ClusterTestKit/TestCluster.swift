import AsyncHTTPClient
import ClusterCore
import ClusterWire
import Foundation
import NIOCore
import NIOHTTP1

/// A cluster of real `doze` processes on loopback (port 0 everywhere, fast heartbeats) for multi-process tests.
open class TestCluster: @unchecked Sendable {
    // @unchecked: touched only by the one test that owns it, sequentially.
    public let dir: TemporaryDirectory
    public var processes: [String: DozeProcess] = [:]
    public var bootstrap = ""
    public let secret = "test-secret"
    /// Extra arguments for every group manager (submission settings).
    public var managerArguments: [String] = []
    /// Extra arguments for every node (e.g. `--auth tokens --admin-token-file …`).
    public var nodeArguments: [String] = []
    /// Sent as a bearer token by `hierarchy()` (clusters started with `--auth tokens`).
    public var token: String?

    public init(prefix: String = "doze-cluster") throws { dir = try TemporaryDirectory(prefix: prefix) }

    public func address(_ name: String) async throws -> String {
        let file = dir.file("\(name)/listen.addr")
        try await eventually(.seconds(20), "\(name) to listen") { FileManager.default.fileExists(atPath: file) }
        return try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public func start(_ name: String, _ arguments: [String]) throws {
        try? FileManager.default.removeItem(atPath: dir.file("\(name)/listen.addr"))
        processes[name] = try DozeProcess(arguments: arguments, logPath: dir.file("\(name).log"))
    }

    public func common() -> [String] {
        ["--bootstrap", bootstrap, "--secret", secret, "--heartbeat-interval-ms", "100", "--controller-timeout-ms", "600",
         "--manager-timeout-ms", "600", "--leader-manager-timeout-ms", "800", "--leader-timeout-ms", "1000"] + nodeArguments
    }

    public func startBootstrap() async throws {
        try start("bs", ["bootstrap", "--listen", "127.0.0.1:0", "--state-dir", dir.file("bs"), "--secret", secret,
                         "--heartbeat-interval-ms", "100", "--leader-timeout-ms", "1000"] + nodeArguments)
        bootstrap = try await address("bs")
    }

    public func startManager(_ name: String) throws {
        try start(name, ["gm", "--listen", "127.0.0.1:0", "--state-dir", dir.file(name), "--election-dir", dir.file("election")]
                  + managerArguments + common())
    }

    public func startController(_ name: String, vm: String? = nil, cpus: Int = 8, memoryMiB: Int = 16384,
                                host address: String = "127.0.0.1", extra: [String] = []) throws {
        let host = dir.file("\(name).xml")
        if !FileManager.default.fileExists(atPath: host) {
            try TestHostFile.write(to: host, cpus: cpus, memoryMiB: memoryMiB, domains: vm.map { [.init(name: $0)] } ?? [])
        }
        try start(name, ["lc", "--listen", "\(address):0", "--hypervisor", "test://" + host, "--state-dir", dir.file(name)] + extra + common())
    }

    public func nodeID(_ name: String) -> String? {
        guard let data = FileManager.default.contents(atPath: dir.file("\(name)/node.json")),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
        return object["id"] as? String
    }

    /// A local controller's id (its `controller.json`).
    public func controllerID(_ name: String) -> String? {
        guard let data = FileManager.default.contents(atPath: dir.file("\(name)/controller.json")),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
        return object["id"] as? String
    }

    public func name(ofManager id: String) -> String? { processes.keys.sorted().first { $0.hasPrefix("gm") && nodeID($0) == id } }
    public func name(ofController id: String) -> String? { processes.keys.sorted().first { controllerID($0) == id } }

    public func hierarchy() async -> GroupLeaderRepositoryInformation? {
        var request = HTTPClientRequest(url: "http://\(bootstrap)/bootstrap?getCompleteHierarchy")
        request.method = .GET
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        guard let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(2)), response.status == .ok,
              let body = try? await response.body.collect(upTo: 1 << 22) else { return nil }
        return try? JSONDecoder().decode(GroupLeaderRepositoryInformation.self, from: Data(body.readableBytesView))
    }

    /// Waits until the tree has a leader of a term above `minTerm` and exactly `vms` under live managers.
    @discardableResult
    public func waitForTree(minTerm: Term = 0, vms: [String], within limit: Duration = .seconds(15)) async throws -> GroupLeaderRepositoryInformation {
        let deadline = ContinuousClock.now + limit
        var last: GroupLeaderRepositoryInformation?
        while ContinuousClock.now < deadline {
            if let tree = await hierarchy(), let leader = tree.groupLeader, leader.term > minTerm {
                last = tree
                let known = tree.groupManagerDescriptions.flatMap { $0.localControllers.values.flatMap { $0.virtualMachineMetaData.keys } }
                if known.sorted() == vms.sorted() { return tree }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TimeoutError(what: "tree never reached \(vms) above term \(minTerm); last: \(String(describing: last)); logs:\n\(logs())")
    }

    public func stop() { for process in processes.values { process.kill9() } ; dir.remove() }

    /// The last lines of every node's log, for failure messages.
    public func logs(lines: Int = 8) -> String {
        processes.keys.sorted().map { "== \($0)\n" + (processes[$0]?.log.split(separator: "\n").suffix(lines).joined(separator: "\n") ?? "") }
            .joined(separator: "\n")
    }

    /// One HTTP exchange with a node: status and body text.
    public func call(_ method: HTTPMethod, _ address: String, _ target: String, body: String? = nil,
                     headers: [(String, String)] = [], timeout: Duration = .seconds(30)) async throws -> (status: Int, body: String) {
        var request = HTTPClientRequest(url: "http://\(address)\(target)")
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(timeout.components.seconds + 1))
        let bytes = try await response.body.collect(upTo: 64 << 20)
        return (Int(response.status.code), String(buffer: bytes))
    }
}
