import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL

/// Requests per second of `GET /v1/vms` and of 1-VM submissions (each polled to its end) against bootstraps set up
/// differently (plain or TLS, with or without a token), in the same run: the cost of TLS and tokens as a ratio to
/// the first target.
struct APIBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "api")

    @Option(name: .customLong("target"), help: "LABEL=URL[,token=FILE][,ca=FILE] (repeatable; the first is the baseline).")
    var targets: [String]

    @Option(help: "Seconds of GET /v1/vms per target.")
    var seconds = 5.0

    @Option(help: "Requests in flight at once.")
    var concurrency = 16

    @Option(help: "1-VM submissions per target (each waited for).")
    var submissions = 60

    struct Target {
        var label: String
        var url: String
        var token: String?
        var client: HTTPClient
    }

    func parse(_ text: String) throws -> Target {
        let parts = text.split(separator: ",").map(String.init)
        guard let first = parts.first, let equals = first.firstIndex(of: "=") else { throw ValidationError("--target LABEL=URL[,token=FILE][,ca=FILE]") }
        var token: String?, ca: String?
        for part in parts.dropFirst() {
            if part.hasPrefix("token=") {
                token = try String(contentsOfFile: String(part.dropFirst(6)), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            } else if part.hasPrefix("ca=") { ca = String(part.dropFirst(3)) }
        }
        var tls = TLSConfiguration.makeClientConfiguration()
        if let ca { tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca)) }
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = concurrency
        return Target(label: String(first[..<equals]), url: String(first[first.index(after: equals)...]), token: token,
                      client: HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration))
    }

    func request(_ target: Target, _ method: HTTPMethod, _ path: String, body: String? = nil) async throws -> (Int, ByteBuffer) {
        var request = HTTPClientRequest(url: target.url + path)
        request.method = method
        if let token = target.token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        let response = try await target.client.execute(request, timeout: .seconds(60))
        return (Int(response.status.code), try await response.body.collect(upTo: 16 << 20))
    }

    /// GET /v1/vms as fast as `concurrency` clients go, for `seconds`: requests per second.
    func listRate(_ target: Target) async throws -> Double {
        let end = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        let start = ContinuousClock.now
        let counts = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<concurrency {
                group.addTask {
                    var done = 0
                    while ContinuousClock.now < end {
                        let (status, _) = try await request(target, .GET, "/v1/vms")
                        guard status == 200 else { throw ValidationError("\(target.label): GET /v1/vms answered \(status)") }
                        done += 1
                    }
                    return done
                }
            }
            return try await group.reduce(0, +)
        }
        let elapsed = start.duration(to: .now)
        return Double(counts) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }

    /// `submissions` 1-VM virtual clusters, `concurrency` at a time, each polled until done, then destroyed:
    /// submissions per second.
    func submitRate(_ target: Target, run: Int) async throws -> Double {
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            var next = 0
            func add() {
                let index = next; next += 1
                group.addTask {
                    let name = "bench-\(target.label)-\(run)-\(index)"
                    let xml = "<domain type='kvm'><name>\(name)</name><memory unit='MiB'>16</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>"
                    let body = String(decoding: try JSONSerialization.data(withJSONObject: ["virtualMachineTemplates": [["libVirtTemplate": xml]]]), as: UTF8.self)
                    let (status, answer) = try await request(target, .POST, "/v1/virtual-clusters", body: body)
                    guard status == 202, let object = try JSONSerialization.jsonObject(with: Data(answer.readableBytesView)) as? [String: Any],
                          let task = object["taskId"] as? String else { throw ValidationError("\(target.label): submission answered \(status)") }
                    while true {
                        let (_, document) = try await request(target, .GET, "/v1/virtual-clusters/\(task)?wait=10")
                        if String(buffer: document).contains(#""state":"done""#) { break }
                    }
                    _ = try await request(target, .POST, "/v1/vms/\(name)/destroy")
                }
            }
            for _ in 0..<min(concurrency, submissions) { add() }
            while try await group.next() != nil { if next < submissions { add() } }
        }
        let elapsed = start.duration(to: .now)
        return Double(submissions) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }

    func run() async throws {
        let parsed = try targets.map(parse)
        guard !parsed.isEmpty else { throw ValidationError("give at least one --target") }
        var rows: [(String, Double, Double)] = []
        for (index, target) in parsed.enumerated() {
            _ = try await listRate(Target(label: target.label, url: target.url, token: target.token, client: target.client))   // warm-up
            rows.append((target.label, try await listRate(target), try await submitRate(target, run: index)))
        }
        let base = rows[0]
        print("target".padding(toLength: 22, withPad: " ", startingAt: 0) + "GET /v1/vms req/s  ratio   submissions/s  ratio")
        for (label, list, submit) in rows {
            print(label.padding(toLength: 22, withPad: " ", startingAt: 0)
                  + String(format: "%17.0f  %5.2f   %13.1f  %5.2f", list, list / base.1, submit, submit / base.2))
        }
        for target in parsed { try await target.client.shutdown() }
    }
}
