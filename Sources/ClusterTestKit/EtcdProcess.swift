import AsyncHTTPClient
import NIOCore
import Foundation

/// A single-member etcd (Debian's `etcd-server`) on loopback for tests, on two free ports, data in `directory`.
public final class EtcdProcess: @unchecked Sendable {
    // @unchecked: `process` is set once in init.
    public let process: Process
    public let clientURL: String
    public let logPath: String

    /// A free TCP port on 127.0.0.1 (bound, read, released: etcd cannot take port 0).
    public static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw POSIXError(.EADDRINUSE) }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    public init(directory: String, name: String = "t1") throws {
        let client = try Self.freePort(), peer = try Self.freePort()
        clientURL = "http://127.0.0.1:\(client)"
        let peerURL = "http://127.0.0.1:\(peer)"
        logPath = directory + "/etcd-\(name).log"
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/etcd")
        process.arguments = ["--name", name, "--data-dir", directory + "/etcd-\(name)", "--logger=zap",
                             "--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
                             "--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
                             "--initial-cluster", "\(name)=\(peerURL)", "--initial-cluster-state", "new"]
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    public static var isInstalled: Bool { FileManager.default.isExecutableFile(atPath: "/usr/bin/etcd") }

    /// Waits (bounded) until `/health` answers `{"health":"true"}`.
    public func waitHealthy(within limit: Duration = .seconds(10)) async throws {
        try await eventually(limit, "etcd at \(clientURL) to be healthy") {
            let request = HTTPClientRequest(url: self.clientURL + "/health")
            guard let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(1)),
                  let body = try? await response.body.collect(upTo: 4096) else { return false }
            return String(buffer: body).contains("\"true\"")
        }
    }

    public func pause() { kill(process.processIdentifier, SIGSTOP) }
    public func resume() { kill(process.processIdentifier, SIGCONT) }

    public func stop() {
        kill(process.processIdentifier, SIGCONT)
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}
