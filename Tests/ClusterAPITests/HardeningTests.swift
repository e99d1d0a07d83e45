import ClusterAPI
import ClusterCore
import ClusterNode
import ClusterTestKit
import ClusterWire
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

/// What a hostile client of one local controller found (issue 17), through the real router: deep documents,
/// pools over system trees, paths a domain names, numbers, quotas and retried creates.
@Suite struct HardeningTests {
    static func nested(_ depth: Int) -> String {
        "<domain type='kvm'><name>deep</name><memory unit='MiB'>64</memory><os><type>hvm</type></os><description>"
            + String(repeating: "<a>", count: depth) + String(repeating: "</a>", count: depth) + "</description></domain>"
    }

    @Test func deepDomainXMLIsRefusedAtOnceWithWhere() async throws {
        try await APIFixture.make(configure: { $0.maxBodyBytes = 1 << 20 }).run { client in
            for depth in [70, 16_000, 100_000] {   // 100k levels: 700 KB, under the controller's default 1 MiB limit
                try await client.expectError(.post, "/vm", Self.nested(depth), status: .badRequest,
                                             "elements nest more than 64 levels deep")
            }
            try await client.expectError(.post, "/localcontroller?startVirtualMachines", submission([("deep", Self.nested(500))]),
                                         status: .badRequest, "nest more than 64 levels")
            // Within the limit the same shape is a VM.
            let shallow = Self.nested(50).replacingOccurrences(of: "<name>deep</name>", with: "<name>shallow</name>")
            try await client.call(.post, "/vm", shallow, status: .created)
            // Other XML faults say what and where, not a parser's error number.
            try await client.expectError(.post, "/vm", "<domain type='kvm'>\n  <name>x</nam>", status: .badRequest, "line 2, column")
            try await client.expectError(.post, "/vm", "<!DOCTYPE d [<!ENTITY e 'x'>]><domain/>", status: .badRequest, "DOCTYPE")
        }
    }

    @Test func poolsStayOutOfSystemTreesAndTheStateDirectory() async throws {
        let fixture = try await APIFixture.make()
        let link = fixture.dir.file("to-etc")
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: "/etc")
        let state = fixture.dir.file("state")
        try await fixture.run { client in
            func pool(_ name: String, _ path: String) -> String { #"{"pool":{"name":"\#(name)","path":"\#(path)","max_gb":1}}"# }
            for (path, fragment) in [("/etc", "system tree /etc"), ("/proc/self", "system tree /proc"), ("/", "shared system directory"),
                                     ("/usr/lib/x", "system tree /usr"), ("/var/lib/libvirt/images", "system tree /var/lib/libvirt"),
                                     ("/tmp", "shared system directory"), (state, "state directory"), (state + "/pools", "state directory"),
                                     (link, "system tree /etc"), (link + "/cron.d", "'/etc/cron.d' is inside the system tree /etc")] {
                try await client.expectError(.post, "/hypervisor/pools", pool("p", path), status: .forbidden, fragment)
            }
            try await client.expectError(.put, "/hypervisor/image-pool", #"{"image-pool":{"path":"/etc"}}"#, status: .forbidden, "system tree /etc")
            try await client.expectError(.put, "/hypervisor/image-pool", #"{"image-pool":{"path":"\#(link)"}}"#, status: .forbidden, "system tree /etc")
            // Overlap is judged after symlinks are resolved.
            let real = fixture.dir.file("real")
            try FileManager.default.createDirectory(atPath: real, withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: fixture.dir.file("alias"), withDestinationPath: real)
            let first = try await client.json(PoolDocument.self, .post, "/hypervisor/pools", pool("first", real))
            try await client.expectError(.post, "/hypervisor/pools", pool("second", fixture.dir.file("alias") + "/sub"),
                                         status: .conflict, "overlaps pool 'first'")
            // And /etc/shadow never becomes a disk.
            let shadow = "<disk type='file' device='disk'><source file='/etc/shadow'/><target dev='vda'/></disk>"
            try await client.expectError(.post, "/vm", xml("thief", devices: shadow), status: .forbidden, "outside the allowed directories")
            try await client.call(.delete, "/hypervisor/pools/\(try #require(first.pool.uuid))", "{}")
        }
    }

    @Test func storageRootsConfineEveryPool() async throws {
        let root = try TemporaryDirectory()
        defer { root.remove() }
        let fixture = try await APIFixture.make { $0.storageRoots = [root.path] }
        let outside = fixture.dir.file("elsewhere")
        try await fixture.run { client in
            try await client.expectError(.post, "/hypervisor/pools", #"{"pool":{"name":"o","path":"\#(outside)","max_gb":1}}"#,
                                         status: .forbidden, "outside the storage roots (\(root.path))")
            let made = try await client.json(PoolDocument.self, .post, "/hypervisor/pools",
                                             #"{"pool":{"name":"in","path":"\#(root.path)/fast","max_gb":1}}"#)
            #expect(made.pool.path == root.path + "/fast")
        }
    }

    @Test func everyPathAVMNamesIsChecked() async throws {
        let fixture = try await APIFixture.make()
        let poolPath = fixture.dir.file("pools/data")
        try await fixture.run { client in
            let made = try await client.json(PoolDocument.self, .post, "/hypervisor/pools", #"{"pool":{"name":"data","path":"\#(poolPath)","max_gb":1}}"#)
            let libvirtName = "doze-" + (try #require(made.pool.uuid)).prefix(8)
            let cases: [(String, String)] = [
                ("<disk type='volume' device='disk'><source pool='\(libvirtName)' volume='../../etc/passwd'/><target dev='vda'/></disk>",
                 "must be a file name inside pool"),
                ("<disk type='volume' device='disk'><source pool='default' volume='a.img'/><target dev='vda'/></disk>",
                 "storage pool 'default' is not a pool of this controller"),
                ("<serial type='file'><source path='/etc/cron.d/evil'/><target port='0'/></serial>", "'/etc/cron.d/evil' is outside"),
                ("<console type='pty'><log file='/etc/cron.d/evil2'/><target type='serial' port='0'/></console>", "'/etc/cron.d/evil2' is outside"),
                ("<emulator>/bin/sh</emulator>", "emulator '/bin/sh' is not a QEMU system emulator"),
                ("<filesystem type='mount'><source dir='/root'/><target dir='r'/></filesystem>", "'/root' is outside"),
            ]
            for (i, (devices, fragment)) in cases.enumerated() {
                try await client.expectError(.post, "/vm", xml("p\(i)", devices: devices), status: .forbidden, fragment)
            }
            let kernel = "<domain type='kvm'><name>k</name><memory>65536</memory><os><type>hvm</type><kernel>/boot/vmlinuz</kernel></os></domain>"
            try await client.expectError(.post, "/vm", kernel, status: .forbidden, "kernel '/boot/vmlinuz' is outside")
            let fine = "<disk type='volume' device='disk'><source pool='\(libvirtName)' volume='a.img'/><target dev='vda'/></disk>"
                + "<emulator>/usr/bin/qemu-system-x86_64</emulator>"
            try await client.call(.post, "/vm", xml("ok", devices: fine), status: .created)
            #expect(try await client.json(VMListDocument.self, .get, "/vms").vms.map(\.name) == ["ok"])
        }
    }

    @Test func numbersAreIntegersWhereIntegersAreExpectedAndJSONIsStrict() async throws {
        try await APIFixture.make().run { client in
            for number in ["2.5", "1e308", "12345678901234567890123456"] {
                try await client.expectError(.put, "/hypervisor/quota", #"{"quota":{"cpu_max":\#(number)}}"#, status: .badRequest,
                                             "must be an integer is not one (or does not fit in 64 bits): 'quota.cpu_max' is \(number)")
            }
            try await client.expectError(.put, "/hypervisor/quota", #"{"quota":{"cpu_max":4,}}"#, status: .badRequest,
                                         "line 1, column 23: a trailing comma before '}'")
            try await client.expectError(.put, "/hypervisor/quota", #"{"quota":{"cpu_max":"4"}}"#, status: .badRequest,
                                         "must be an integer that fits in Int at 'quota.cpu_max'")
            let deep = String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000)
            try await client.expectError(.put, "/hypervisor/quota", deep, status: .badRequest, "nested deeper than 64 levels")
        }
    }

    @Test func aQuotaPromisesNoMoreThanTheHostHasUnlessOvercommitIsSet() async throws {
        try await APIFixture.make(cpus: 8, memoryMiB: 16384).run { client in
            try await client.expectError(.put, "/hypervisor/quota", #"{"quota":{"cpu_max":9223372036854775807}}"#, status: .badRequest,
                                         "above the 8 vCPUs this host can give")
            try await client.expectError(.put, "/hypervisor/quota", #"{"quota":{"memory_max_mb":16385}}"#, status: .badRequest,
                                         "above the 16384 MB this host can give")
            try await client.call(.put, "/hypervisor/quota", #"{"quota":{"cpu_max":8,"memory_max_mb":16384}}"#)
        }
        try await APIFixture.make(cpus: 8, memoryMiB: 16384, configure: { $0.cpuOvercommit = 4; $0.memoryOvercommit = 1.5 }).run { client in
            try await client.call(.put, "/hypervisor/quota", #"{"quota":{"cpu_max":32,"memory_max_mb":24576}}"#)
            try await client.expectError(.put, "/hypervisor/quota", #"{"quota":{"cpu_max":33}}"#, status: .badRequest, "at its overcommit ratio")
            #expect(try await client.call(.get, "/hypervisor/usages").contains(#""cpu_total":32"#))
        }
    }

    @Test func networkDemandsAreRealByteCounts() async throws {
        try await APIFixture.make().run { client in
            for (rx, tx) in [(-1.0, 0.0), (0, -5), (1e19, 0)] {
                let answer = try await client.call(.post, "/localcontroller?startVirtualMachines&partial",
                                                   submission([("n", xml("n"))], rx: rx, tx: tx))
                #expect(answer.contains("must be a number of bytes from 0 to 2^53"), "\(answer)")
            }
            try await client.call(.post, "/localcontroller?startVirtualMachines", submission([("n", xml("n"))], rx: 100, tx: 200))
            try await client.expectError(.post, "/localcontroller?resizeVirtualMachine",
                                         #"{"virtualMachineLocation":{"virtualMachineId":"n"},"resizedCapacity":[-1,-1,-7,-1]}"#,
                                         status: .badRequest, "rxBytes must be a number of bytes")
            try await client.expectError(.post, "/localcontroller?resizeVirtualMachine",
                                         #"{"virtualMachineLocation":{"virtualMachineId":"n"},"resizedCapacity":[-1,-1,-1,1e19]}"#,
                                         status: .badRequest, "txBytes must be a number of bytes")
        }
    }

    @Test func aRetriedCreateFindsTheVMItMade() async throws {
        try await APIFixture.make().run { client in
            let body = submission([("r1", xml("r1"))], rx: 10, tx: 20)
            let first = try await client.json(VirtualMachineSubmission.self, .post, "/localcontroller?startVirtualMachines", body)
            let again = try await client.json(VirtualMachineSubmission.self, .post, "/localcontroller?startVirtualMachines", body)
            #expect(first.virtualMachineMetaData.first?.status == .running)
            #expect(again.virtualMachineMetaData.first?.status == .running)
            #expect(again.virtualMachineMetaData.first?.virtualMachineLocation == first.virtualMachineMetaData.first?.virtualMachineLocation)
            try await client.expectError(.post, "/localcontroller?startVirtualMachines", submission([("r1", xml("r1", vcpus: 2))]),
                                         status: .conflict, "different definition")
            #expect(try await client.json(VMListDocument.self, .get, "/vms").vms.map(\.name) == ["r1"])
        }
    }
}

@Suite struct EventWaitBoundTests {
    @Test func hugeWaitsAreClampedNotTrapped() {
        #expect(EventQuery.boundedWait(seconds: 3.6834164097616696e16) == maximumEventWait)
        #expect(EventQuery.boundedWait(seconds: 1.7976931348623157e308) == maximumEventWait)
        #expect(EventQuery.boundedWait(seconds: 2.5) == .milliseconds(2500))
        #expect(EventQuery.boundedWait(seconds: 0) == .zero)
    }
}
