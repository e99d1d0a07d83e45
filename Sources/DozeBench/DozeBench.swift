import ArgumentParser
import AsyncHTTPClient
import Foundation
import Hypervisor
import LibvirtHypervisor
import NIOCore
import NIOHTTP1

@main
struct DozeBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doze-bench",
        abstract: "Benchmarks that print figures next to a baseline measured in the same run.",
        subcommands: [LocalControllerBench.self, SubmitBench.self, APIBench.self])
}

/// Starts and destroys N VMs through a running `doze lc` HTTP API, then the same N directly through the libvirt
/// layer on a fresh connection to the same kind of host, and prints both times and their ratio.
struct LocalControllerBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "lc")

    @Option(help: "Base URL of the local controller under test.")
    var url: String

    @Option(help: "Test-driver host file for the direct-libvirt baseline (same host as the controller's).")
    var hostFile: String

    @Option(help: "VMs to start and destroy.")
    var count = 1000

    @Option(help: "Requests in flight at once (both runs).")
    var concurrency = 8

    @Option(help: "Rounds; the median is reported.")
    var rounds = 3

    func xml(_ name: String) -> String {
        "<domain type='test'><name>\(name)</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>"
    }

    /// Runs `work(i)` for i in 0..<count with at most `concurrency` in flight; returns elapsed seconds.
    func timed(_ work: @escaping @Sendable (Int) async throws -> Void) async throws -> Double {
        let clock = ContinuousClock()
        let start = clock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            var next = 0
            for _ in 0..<min(concurrency, count) {
                let index = next; next += 1
                group.addTask { try await work(index) }
            }
            while try await group.next() != nil {
                if next < count {
                    let index = next; next += 1
                    group.addTask { try await work(index) }
                }
            }
        }
        let elapsed = start.duration(to: clock.now)
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }

    func run() async throws {
        let client = HTTPClient(eventLoopGroupProvider: .singleton,
                                configuration: .init(connectionPool: .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: concurrency)))
        do {
            try await measure(client)
        } catch {
            try? await client.shutdown()
            throw error
        }
        try await client.shutdown()
    }

    func measure(_ client: HTTPClient) async throws {
        let base = url
        @Sendable func call(_ method: HTTPMethod, _ path: String, _ body: String?, expect: Int) async throws {
            var request = HTTPClientRequest(url: base + path)
            request.method = method
            if let body { request.body = .bytes(ByteBuffer(string: body)) }
            let response = try await client.execute(request, timeout: .seconds(30))
            let text = String(buffer: try await response.body.collect(upTo: 1 << 20))
            guard response.status.code == expect else {
                throw ValidationError("\(method) \(path) answered \(response.status.code): \(text)")
            }
        }

        print("doze-bench lc: \(count) VMs started then destroyed, \(concurrency) in flight, \(rounds) rounds")
        var httpStart: [Double] = [], httpDestroy: [Double] = [], directStart: [Double] = [], directDestroy: [Double] = []
        for round in 1...rounds {
            let prefix = "b\(round)-"
            let xmls = (0..<count).map { xml(prefix + "\($0)") }
            httpStart.append(try await timed { index in try await call(.POST, "/vm", xmls[index], expect: 201) })
            httpDestroy.append(try await timed { index in try await call(.DELETE, "/vm?name=\(prefix)\(index)", nil, expect: 200) })

            // Baseline: what the controller does for each VM, straight through the libvirt layer.
            let host = try await LibvirtHost.open(uri: "test://" + hostFile)
            directStart.append(try await timed { index in
                _ = try await host.define(xml: xmls[index])
                _ = try await host.start(.name(prefix + "\(index)"))
            })
            directDestroy.append(try await timed { index in
                try await host.destroy(.name(prefix + "\(index)"))
                try await host.undefine(.name(prefix + "\(index)"))
            })
            await host.close()
            print(String(format: "  round %d: HTTP %.3f s + %.3f s, direct %.3f s + %.3f s", round,
                         httpStart.last!, httpDestroy.last!, directStart.last!, directDestroy.last!))
        }
        func median(_ values: [Double]) -> Double { let sorted = values.sorted(); return sorted[sorted.count / 2] }
        let http = median(zip(httpStart, httpDestroy).map(+)), direct = median(zip(directStart, directDestroy).map(+))
        print("")
        print("                      start      destroy    total      per VM (start+destroy)")
        print(String(format: "  through HTTP API    %.3f s    %.3f s    %.3f s    %.0f µs", median(httpStart), median(httpDestroy), http, http / Double(count) * 1e6))
        print(String(format: "  direct libvirt      %.3f s    %.3f s    %.3f s    %.0f µs", median(directStart), median(directDestroy), direct, direct / Double(count) * 1e6))
        print(String(format: "  ratio HTTP/direct   %.2f (target <= 3)", http / direct))
    }
}
