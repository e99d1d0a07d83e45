import ArgumentParser
import AsyncHTTPClient
import Foundation
import Hypervisor
import LibvirtHypervisor
import NIOCore
import NIOHTTP1

/// Virtual clusters submitted through a running cluster's bootstrap, client-observed from the POST to the final
/// answer; and, in the same run, the floor: the same VMs created directly through libvirt on hosts of the same kind.
struct SubmitBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "submit")

    @Option(help: "The bootstrap's HOST:PORT.")
    var bootstrap: String

    @Option(help: "Test-driver host files of the controllers, comma-separated (for the direct-libvirt floor).")
    var hostFiles: String

    @Option(help: "1-VM virtual clusters to time one after the other.")
    var singles = 200

    @Option(help: "VMs in the large virtual cluster.")
    var large = 1000

    func xml(_ name: String, type: String = "kvm") -> String {
        "<domain type='\(type)'><name>\(name)</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type></os>"
            + "<devices><interface type='network'><source network='default'/></interface></devices></domain>"
    }

    func body(_ names: [String]) throws -> String {
        let templates = names.map { ["libVirtTemplate": xml($0)] }
        return String(decoding: try JSONSerialization.data(withJSONObject: ["virtualMachineTemplates": templates]), as: UTF8.self)
    }

    static func seconds(_ duration: Duration) -> Double { Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18 }

    static func percentile(_ values: [Double], _ fraction: Double) -> Double {
        let sorted = values.sorted()
        return sorted[min(sorted.count - 1, Int((Double(sorted.count) * fraction).rounded(.up)) - 1)]
    }

    func run() async throws {
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        do { try await measure(client) } catch {
            try? await client.shutdown()
            throw error
        }
        try await client.shutdown()
    }

    /// POST startVirtualCluster, then getVirtualClusterResponse with a wait bound until the answer is final.
    func submit(_ client: HTTPClient, _ names: [String]) async throws -> (seconds: Double, running: Int) {
        let payload = try body(names)
        let clock = ContinuousClock()
        let start = clock.now
        func post(_ target: String, _ text: String) async throws -> String {
            var request = HTTPClientRequest(url: "http://\(bootstrap)/bootstrap?\(target)")
            request.method = .POST
            request.body = .bytes(ByteBuffer(string: text))
            let response = try await client.execute(request, timeout: .seconds(120))
            let answer = String(buffer: try await response.body.collect(upTo: 256 << 20))
            guard response.status == .ok else { throw ValidationError("\(target) answered \(response.status.code): \(answer)") }
            return answer
        }
        let task = try await post("startVirtualCluster", payload)
        var answer = ""
        while answer.isEmpty { answer = try await post("getVirtualClusterResponse&wait=60", task) }
        let elapsed = Self.seconds(start.duration(to: clock.now))
        let running = answer.components(separatedBy: "\"status\":\"RUNNING\"").count - 1
        return (elapsed, running)
    }

    func measure(_ client: HTTPClient) async throws {
        let hosts = hostFiles.split(separator: ",").map(String.init)
        let tag = String(UInt32.random(in: 0..<UInt32.max), radix: 36)
        print("doze-bench submit: through the bootstrap at \(bootstrap), \(hosts.count) controllers; floor on \(hosts.count) fresh test-driver hosts")

        // 1-VM virtual clusters, one after the other.
        var singleTimes: [Double] = []
        for i in 0..<singles {
            let (elapsed, running) = try await submit(client, ["s\(tag)-\(i)"])
            guard running == 1 else { throw ValidationError("1-VM cluster \(i) did not end RUNNING") }
            singleTimes.append(elapsed)
        }
        // The large virtual cluster, end to end.
        let names = (0..<large).map { "l\(tag)-\($0)" }
        let (largeTime, largeRunning) = try await submit(client, names)

        // The floor: define + start of the same VMs straight through libvirt, on as many hosts, all hosts at once.
        var connections: [LibvirtHost] = []
        for hostFile in hosts { connections.append(try await LibvirtHost.open(uri: "test://" + hostFile)) }
        var floorSingles: [Double] = []
        let clock = ContinuousClock()
        for i in 0..<singles {
            let start = clock.now
            let host = connections[i % connections.count]
            _ = try await host.define(xml: xml("fs\(tag)-\(i)", type: "test"))
            _ = try await host.start(.name("fs\(tag)-\(i)"))
            floorSingles.append(Self.seconds(start.duration(to: clock.now)))
        }
        let start = clock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, host) in connections.enumerated() {
                let mine = stride(from: index, to: large, by: connections.count).map { "fl\(tag)-\($0)" }
                group.addTask {
                    for name in mine {
                        _ = try await host.define(xml: xml(name, type: "test"))
                        _ = try await host.start(.name(name))
                    }
                }
            }
            try await group.waitForAll()
        }
        let floorLarge = Self.seconds(start.duration(to: clock.now))
        for connection in connections { await connection.close() }

        let p50 = Self.percentile(singleTimes, 0.5), p99 = Self.percentile(singleTimes, 0.99)
        let f50 = Self.percentile(floorSingles, 0.5), f99 = Self.percentile(floorSingles, 0.99)
        print("")
        print("                                   doze (through bootstrap)   direct libvirt (floor)   ratio")
        print(String(format: "  1-VM cluster, p50 of %-4d         %8.2f ms                %8.3f ms             %6.1f", singles, p50 * 1000, f50 * 1000, p50 / f50))
        print(String(format: "  1-VM cluster, p99                 %8.2f ms                %8.3f ms             %6.1f", p99 * 1000, f99 * 1000, p99 / f99))
        print(String(format: "  %d-VM cluster, end to end       %8.3f s                 %8.3f s              %6.1f", large, largeTime, floorLarge, largeTime / floorLarge))
        print(String(format: "  %d of %d VMs RUNNING; targets: 1-VM p50 <= 20 ms, %d VMs <= 1 s", largeRunning, large, large))
    }
}
