import ArgumentParser
import ClusterCore
import ClusterWire
import Foundation
import NIOCore
import NIOHTTP1

/// `doze network create|list|show|delete`: seed 004's switches, through the bootstrap.
struct NetworkCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "network", abstract: "Switches VMs attach to (doze submit --network NAME): create, list, show, delete.",
        subcommands: [Create.self, List.self, Show.self, Delete.self], defaultSubcommand: List.self)

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a switch with its subnet, gateway and DHCP range.")
        @Argument(help: "Name: lowercase letters, digits, '-' and '.'.") var name: String
        @Option(help: "IPv4 subnet, e.g. 10.200.0.0/24 (must not overlap another network).") var subnet: String
        @Option(help: "Gateway address (default: the subnet's first host).") var gateway: String?
        @Option(help: "Addresses VMs get, FIRST-LAST (default: every host address of the subnet).") var dhcpRange: String?
        @OptionGroup var client: ClientOptions

        func run() async throws {
            try await reportingFailures {
                let api = try client.client()
                let raw = try await api.call(.POST, "/v1/networks", body: NetworkCreateRequest(name: name, subnet: subnet, gateway: gateway, dhcpRange: dhcpRange))
                if client.json { print(String(buffer: raw)); return }
                print(NetworkCommand.render(try api.decode(SwitchDocument.self, raw)))
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every switch, its subnet and how many addresses are in use.")
        @OptionGroup var client: ClientOptions
        func run() async throws {
            try await reportingFailures {
                let api = try client.client()
                let raw = try await api.call(.GET, "/v1/networks")
                if client.json { print(String(buffer: raw)); return }
                let list = try api.decode(NetworkList.self, raw)
                var table = TextTable("NAME", "SUBNET", "GATEWAY", "DHCP RANGE", "VNI", "VMS", "FREE")
                for network in list.networks {
                    table.add([network.name, network.subnet, network.gateway, "\(network.dhcpStart)-\(network.dhcpEnd)", "\(network.vni)",
                               "\(network.leases.count)", "\(network.free)"])
                }
                print(list.networks.isEmpty ? "no networks (doze network create NAME --subnet CIDR)" : table.render())
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A switch and every VM address on it.")
        @Argument var name: String
        @OptionGroup var client: ClientOptions
        func run() async throws {
            try await reportingFailures {
                let api = try client.client()
                let raw = try await api.call(.GET, "/v1/networks/" + BootstrapClient.segment(name))
                if client.json { print(String(buffer: raw)); return }
                print(NetworkCommand.render(try api.decode(SwitchDocument.self, raw)))
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a switch no VM uses.")
        @Argument var name: String
        @OptionGroup var client: ClientOptions
        func run() async throws {
            try await reportingFailures {
                let api = try client.client()
                let raw = try await api.call(.DELETE, "/v1/networks/" + BootstrapClient.segment(name))
                if client.json { print(String(buffer: raw)); return }
                print("network \(name) deleted")
            }
        }
    }

    static func render(_ network: SwitchDocument) -> String {
        var text = keyValueLines([("network", network.name), ("subnet", network.subnet), ("gateway", network.gateway),
                                  ("dhcp range", "\(network.dhcpStart)-\(network.dhcpEnd)"), ("vni", "\(network.vni)"),
                                  ("bridge", network.bridge), ("addresses", "\(network.capacity - network.free) in use, \(network.free) free")])
        if !network.leases.isEmpty {
            var table = TextTable("VM", "IP", "MAC", "FLOATING IP")
            for lease in network.leases { table.add([lease.vm, lease.ip, lease.mac, lease.floatingIP ?? "-"]) }
            text += "\n\n" + table.render()
        }
        return text
    }
}

/// `doze fip allocate|bind|unbind|release|list`: floating IPs.
struct FloatingIPCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fip", abstract: "Floating IPs: allocate from the public range, bind to a VM, unbind, release, list.",
        subcommands: [Allocate.self, Bind.self, Unbind.self, Release.self, List.self], defaultSubcommand: List.self)

    struct Allocate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Allocate a floating IP (the lowest free one, or --address).")
        @Option(help: "This address of the range.") var address: String?
        @OptionGroup var client: ClientOptions
        func run() async throws {
            try await FloatingIPCommand.show(client) { api in
                try await api.call(.POST, "/v1/floating-ips", body: FloatingIPAllocateRequest(address: address))
            }
        }
    }

    struct Bind: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Bind a floating IP to a VM's address on a switch; it follows the VM.")
        @Argument var address: String
        @Argument var vm: String
        @Option(help: "The VM's network, when it is on more than one.") var network: String?
        @OptionGroup var client: ClientOptions
        func run() async throws {
            try await FloatingIPCommand.show(client) { api in
                try await api.call(.POST, "/v1/floating-ips/\(BootstrapClient.segment(address))/bind", body: FloatingIPBindRequest(vm: vm, network: network))
            }
        }
    }

    struct Unbind: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Unbind a floating IP (it stays allocated).")
        @Argument var address: String
        @OptionGroup var client: ClientOptions
        func run() async throws {
            try await FloatingIPCommand.show(client) { api in
                try await api.call(.POST, "/v1/floating-ips/\(BootstrapClient.segment(address))/unbind", body: "")
            }
        }
    }

    struct Release: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Release a floating IP back to the range (unbinding it first).")
        @Argument var address: String
        @OptionGroup var client: ClientOptions
        func run() async throws {
            try await reportingFailures {
                let api = try client.client()
                let raw = try await api.call(.DELETE, "/v1/floating-ips/" + BootstrapClient.segment(address))
                if client.json { print(String(buffer: raw)); return }
                print("floating IP \(address) released")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every allocated floating IP, what it is bound to and where.")
        @OptionGroup var client: ClientOptions
        func run() async throws {
            try await reportingFailures {
                let api = try client.client()
                let raw = try await api.call(.GET, "/v1/floating-ips")
                if client.json { print(String(buffer: raw)); return }
                let list = try api.decode(FloatingIPList.self, raw)
                var table = TextTable("FLOATING IP", "VM", "PRIVATE IP", "NETWORK", "HOST", "DATA PLANE")
                for entry in list.floatingIPs {
                    table.add([entry.address, entry.vm ?? "-", entry.privateIP ?? "-", entry.network ?? "-", entry.host ?? "-", entry.dataPlane ?? "-"])
                }
                let range = list.floatingRange.map { "range \($0), \(list.free) free" } ?? "no floating range configured (doze gm --floating-range)"
                print((list.floatingIPs.isEmpty ? "no floating IPs allocated" : table.render()) + "\n" + range)
            }
        }
    }

    static func show(_ client: ClientOptions, _ call: (BootstrapClient) async throws -> ByteBuffer) async throws {
        try await reportingFailures {
            let api = try client.client()
            let raw = try await call(api)
            if client.json { print(String(buffer: raw)); return }
            let entry = try api.decode(FloatingIPDocument.self, raw)
            print(keyValueLines([("floating ip", entry.address), ("vm", entry.vm ?? "-"), ("private ip", entry.privateIP ?? "-"),
                                 ("network", entry.network ?? "-"), ("host", entry.host ?? "-"), ("data plane", entry.dataPlane ?? "-")]))
        }
    }
}
