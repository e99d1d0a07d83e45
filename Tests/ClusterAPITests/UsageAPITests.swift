import ClusterAPI
import ClusterCore
import ClusterNode
import ClusterTestKit
import ClusterWire
import Foundation
import Hummingbird
import HummingbirdTesting
import Hypervisor
import Testing

/// Issue 12's monitoring on one test-driver host: declared load, read back as usage once a sample is taken.
@Suite struct UsageAPITests {
    static func sample(_ fixture: APIFixture, at seconds: Int64) async {
        await fixture.controller.sampleUsage(now: .seconds(seconds), wallClockMs: 1_700_000_000_000 + seconds * 1000)
    }

    @Test func declaredLoadIsReadBackAsUsageAndCleared() async throws {
        let fixture = try await APIFixture.make(cpus: 8, memoryMiB: 4096,
                                                domains: [.init(name: "web", vcpus: 2, memoryMiB: 1024), .init(name: "db", vcpus: 4)])
        try await fixture.run { client in
            try await client.expectError(.get, "/v1/vms/web/usage", status: .serviceUnavailable, "no usage of VM 'web' yet")
            let declared = try await client.json(SyntheticLoadDocument.self, .post, "/v1/vms/web/load", #"{"vcpus": 1.5, "memoryMiB": 512}"#)
            #expect(declared == SyntheticLoadDocument(vm: "web", load: SyntheticLoad(vcpus: 1.5, memoryMiB: 512)))
            await Self.sample(fixture, at: 10)

            let web = try await client.json(VMUsageDocument.self, .get, "/v1/vms/web/usage")
            #expect(web.vm == "web" && web.vcpus == 2 && web.synthetic)
            #expect(web.vcpusInUse == 1.5 && web.memoryUsedMiB == 512)
            #expect(web.rxBytesPerSecond == 0 && web.txBytesPerSecond == 0)
            #expect(web.sampledAt == 1_700_000_010_000)
            // The shape, key for key.
            let raw = try #require(try JSONSerialization.jsonObject(with: Data(try await client.call(.get, "/v1/vms/web/usage").utf8)) as? [String: Any])
            #expect(Set(raw.keys) == ["vm", "vcpusInUse", "vcpus", "memoryUsedMiB", "rxBytesPerSecond", "txBytesPerSecond",
                                      "synthetic", "sampledAt"])

            // db declares nothing: it is measured, from its second reading on.
            try await client.expectError(.get, "/v1/vms/db/usage", status: .serviceUnavailable, "sampled twice")
            await Self.sample(fixture, at: 12)
            let db = try await client.json(VMUsageDocument.self, .get, "/v1/vms/db/usage")
            #expect(!db.synthetic && db.vcpus == 4 && db.memoryUsedMiB == 256)
            #expect(db.vcpusInUse >= 0 && db.vcpusInUse <= 4)

            let host = try await client.json(HostUsageDocument.self, .get, "/v1/hosts/self/usage")
            #expect(host.host == fixture.controller.id && host.vms == 2 && host.vcpus == 6)
            #expect(host.capacity == .init(cpus: 8, memoryMiB: 4096))
            #expect(host.memoryUsedMiB == 512 + 256)
            #expect(abs(host.vcpusInUse - (1.5 + db.vcpusInUse)) < 1e-9)
            #expect(host.sampledAt == 1_700_000_012_000)

            // Cleared with `{}` (and `null`): web is measured again, its memory included.
            let cleared = try await client.json(SyntheticLoadDocument.self, .post, "/v1/vms/web/load", "{}")
            #expect(cleared == SyntheticLoadDocument(vm: "web", load: SyntheticLoad()))
            #expect(try await client.call(.post, "/v1/vms/web/load", "null") == #"{"vm":"web"}"#)
            await Self.sample(fixture, at: 14)
            let measured = try await client.json(VMUsageDocument.self, .get, "/v1/vms/web/usage")
            #expect(!measured.synthetic && measured.memoryUsedMiB == 1024 && measured.vcpusInUse <= 2)
        }
    }

    @Test func declaringOnlyVCPUsKeepsMeasuredMemory() async throws {
        let fixture = try await APIFixture.make(domains: [.init(name: "web", vcpus: 2, memoryMiB: 1024)])
        try await fixture.run { client in
            try await client.call(.post, "/v1/vms/web/load", #"{"vcpus": 2}"#)
            await Self.sample(fixture, at: 1)
            let web = try await client.json(VMUsageDocument.self, .get, "/v1/vms/web/usage")
            #expect(web.vcpusInUse == 2 && web.memoryUsedMiB == 1024 && web.synthetic)
        }
    }

    @Test func badLoadsAndUnknownVMsAreRefused() async throws {
        let fixture = try await APIFixture.make(domains: [.init(name: "web", vcpus: 2, memoryMiB: 1024)])
        try await fixture.run { client in
            try await client.expectError(.post, "/v1/vms/web/load", #"{"vcpus": -1}"#, status: .badRequest, "vcpus must be a number >= 0")
            try await client.expectError(.post, "/v1/vms/web/load", #"{"vcpus": 3}"#, status: .badRequest,
                                         "vcpus 3.0 is more than the VM's 2 vCPU(s)")
            try await client.expectError(.post, "/v1/vms/web/load", #"{"memoryMiB": 2048}"#, status: .badRequest,
                                         "more than the VM's 1024 MiB")
            try await client.expectError(.post, "/v1/vms/web/load", #"{"vcpus": "lots"}"#, status: .badRequest, "must be a number at 'vcpus'")
            try await client.expectError(.post, "/v1/vms/web/load", #"{"cpus": 1}"#, status: .badRequest, "unknown key 'cpus'")
            try await client.expectError(.post, "/v1/vms/web/load", "", status: .badRequest, "the request body is empty")
            try await client.expectError(.post, "/v1/vms/nope/load", #"{"vcpus": 1}"#, status: .notFound, "unknown VM 'nope'")
            try await client.expectError(.get, "/v1/vms/nope/usage", status: .notFound, "unknown VM 'nope'")
            // Nothing refused was kept.
            await Self.sample(fixture, at: 1)
            try await client.expectError(.get, "/v1/vms/web/usage", status: .serviceUnavailable, "no usage of VM 'web' yet")
        }
    }

    @Test func theLoadIsKeptInTheVMsMetadata() async throws {
        let fixture = try await APIFixture.make(domains: [.init(name: "web", vcpus: 2)])
        try await fixture.run { client in
            try await client.call(.post, "/v1/vms/web/load", #"{"vcpus": 0.5, "memoryMiB": 100}"#)
            let element = try #require(try await fixture.controller.hypervisor.metadata(.name("web"), namespace: DozeDomainMetadata.namespace))
            #expect(DozeDomainMetadata(decoding: element).syntheticLoad == SyntheticLoad(vcpus: 0.5, memoryMiB: 100))
            try await client.call(.post, "/v1/vms/web/load", "{}")
            let clearedElement = try await fixture.controller.hypervisor.metadata(.name("web"), namespace: DozeDomainMetadata.namespace) ?? ""
            #expect(DozeDomainMetadata(decoding: clearedElement).syntheticLoad.isEmpty)
        }
    }

    @Test func aShutOffVMHasNoUsage() async throws {
        let fixture = try await APIFixture.make(domains: [.init(name: "web", vcpus: 2)])
        try await fixture.run { client in
            try await client.call(.post, "/v1/vms/web/load", #"{"vcpus": 1}"#)
            await Self.sample(fixture, at: 1)
            try await client.call(.post, "/vm/shutdown?name=web")
            await Self.sample(fixture, at: 2)
            try await client.expectError(.get, "/v1/vms/web/usage", status: .serviceUnavailable, "it is shutOff")
            #expect(try await client.json(HostUsageDocument.self, .get, "/v1/hosts/self/usage").vms == 0)
        }
    }
}
