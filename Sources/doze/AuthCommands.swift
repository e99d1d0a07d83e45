import ArgumentParser
import ClusterCore
import ClusterLauncher
import ClusterTransport
import ClusterWire
import Foundation
import NIOCore
import NIOHTTP1

/// The token a client command sends: `--token`, else `DOZE_TOKEN`, else the file `DOZE_TOKEN_FILE`, else
/// `~/.config/doze/token` (where `doze cluster up` has the admin token made). None: no header, which an open
/// cluster takes as the admin.
enum ClientToken {
    static func install(explicit: String?) throws {
        let environment = ProcessInfo.processInfo.environment
        var token = explicit ?? environment["DOZE_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        if token == nil {
            let file = environment["DOZE_TOKEN_FILE"].flatMap { $0.isEmpty ? nil : $0 }
            if let file, !FileManager.default.fileExists(atPath: file) { throw ValidationError("DOZE_TOKEN_FILE \(file) does not exist") }
            if let data = FileManager.default.contents(atPath: file ?? DozeConfig.defaultTokenFile) {
                token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            }
        }
        guard let token, !token.isEmpty else { return }
        guard APITokenSecret.parse(token) != nil else {
            throw ValidationError("the API token is malformed (a token looks like dz_<id>_<secret>)")
        }
        NodeCredentials.clientAuthorization = "Bearer \(token)"
    }
}

/// `doze token create|list|revoke` and `doze whoami`.
struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "API tokens: create (shown once), list, revoke.",
        subcommands: [Create.self, List.self, Revoke.self], defaultSubcommand: List.self)

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make a token; it is printed once and never stored in the clear.")
        @Option(help: "Its tenant (default: your own; an admin's: default).") var tenant: String?
        @Option(help: "A name to tell it by in lists.") var name: String?
        @Flag(help: "An admin token (admins only): sees and changes every tenant's objects.") var admin = false
        @OptionGroup var client: ClientOptions

        func run() async throws {
            try await reportingFailures {
                let api = try client.client()
                let raw = try await api.call(.POST, "/v1/tokens", body: TokenCreateRequest(tenant: tenant, name: name, admin: admin ? true : nil))
                if client.json { print(String(buffer: raw)); return }
                let made = try api.decode(TokenDocument.self, raw)
                print(made.token ?? "")
                printError("token \(made.id) for \(made.admin ? "admin" : "tenant \(made.tenant)"): keep it now, it is not shown again")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Tokens you can see (a tenant: its own; an admin: all).")
        @OptionGroup var client: ClientOptions
        func run() async throws {
            try await reportingFailures {
                let api = try client.client()
                let raw = try await api.call(.GET, "/v1/tokens")
                if client.json { print(String(buffer: raw)); return }
                let list = try api.decode(TokenList.self, raw)
                var table = TextTable("ID", "TENANT", "NAME", "ADMIN", "STATE")
                for token in list.tokens {
                    table.add([token.id, token.tenant, token.name, token.admin ? "yes" : "no", token.revoked == nil ? "live" : "revoked"])
                }
                print(list.tokens.isEmpty ? "no tokens (doze token create --tenant NAME)" : table.render())
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a token by its id: it stops working at once.")
        @Argument(help: "The token's id (doze token list), or the token itself.") var id: String
        @OptionGroup var client: ClientOptions
        func run() async throws {
            let id = APITokenSecret.parse(self.id)?.id ?? self.id
            try await reportingFailures {
                let api = try client.client()
                let raw = try await api.call(.DELETE, "/v1/tokens/" + BootstrapClient.segment(id))
                if client.json { print(String(buffer: raw)); return }
                print("token \(id) revoked")
            }
        }
    }
}

struct WhoAmICommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "whoami", abstract: "What the token this CLI sends is: admin or a tenant.")
    @OptionGroup var client: ClientOptions
    func run() async throws {
        try await reportingFailures {
            let api = try client.client()
            let raw = try await api.call(.GET, "/v1/whoami")
            if client.json { print(String(buffer: raw)); return }
            let who = try api.decode(WhoAmI.self, raw)
            let token = who.tokenId.map { " (token \($0))" } ?? " (no token: the cluster is open)"
            print(who.role == "tenant" ? "tenant \(who.tenant ?? "?")\(token)" : "\(who.role)\(token)")
        }
    }
}

/// `doze tenant create|list|show|quota|delete`.
struct TenantCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tenant", abstract: "Tenants (projects) and their quotas: create, list, show, quota, delete.",
        subcommands: [Create.self, List.self, Show.self, Quota.self, Delete.self], defaultSubcommand: List.self)

    struct QuotaOptions: ParsableArguments {
        @Option(help: "Most VMs at once.") var vms: Int?
        @Option(help: "Most vCPUs at once.") var vcpus: Int?
        @Option(help: "Most memory at once, MiB.") var memory: Int?
        @Option(help: "Most floating IPs at once.") var floatingIps: Int?
        var quota: TenantQuota { TenantQuota(vms: vms, vcpus: vcpus, memoryMiB: memory, floatingIPs: floatingIps) }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make a tenant, with a quota (absent bounds: none).")
        @Argument(help: "Name: a-z, 0-9, '-', '_'.") var name: String
        @OptionGroup var quota: QuotaOptions
        @OptionGroup var client: ClientOptions
        func run() async throws {
            try await reportingFailures {
                let api = try client.client()
                let raw = try await api.call(.POST, "/v1/tenants", body: TenantCreateRequest(name: name, quota: quota.quota))
                if client.json { print(String(buffer: raw)); return }
                print(TenantCommand.render(try api.decode(TenantDocument.self, raw)))
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every tenant, what it holds and its quota (admins).")
        @OptionGroup var client: ClientOptions
        func run() async throws {
            try await reportingFailures {
                let api = try client.client()
                let raw = try await api.call(.GET, "/v1/tenants")
                if client.json { print(String(buffer: raw)); return }
                var table = TextTable("TENANT", "VMS", "VCPUS", "MEMORY MIB", "FLOATING IPS")
                func cell(_ used: Int, _ limit: Int?) -> String { "\(used)/" + (limit.map(String.init) ?? "-") }
                for tenant in try api.decode(TenantList.self, raw).tenants {
                    table.add([tenant.name, cell(tenant.usage.vms, tenant.quota.vms), cell(tenant.usage.vcpus, tenant.quota.vcpus),
                               cell(tenant.usage.memoryMiB, tenant.quota.memoryMiB), cell(tenant.usage.floatingIPs, tenant.quota.floatingIPs)])
                }
                print(table.render())
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A tenant: what it holds against its quota.")
        @Argument var name: String
        @OptionGroup var client: ClientOptions
        func run() async throws {
            try await reportingFailures {
                let api = try client.client()
                let raw = try await api.call(.GET, "/v1/tenants/" + BootstrapClient.segment(name))
                if client.json { print(String(buffer: raw)); return }
                print(TenantCommand.render(try api.decode(TenantDocument.self, raw)))
            }
        }
    }

    struct Quota: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Set a tenant's quota (the bounds given; absent ones: none).")
        @Argument var name: String
        @OptionGroup var quota: QuotaOptions
        @OptionGroup var client: ClientOptions
        func run() async throws {
            try await reportingFailures {
                let api = try client.client()
                let raw = try await api.call(.PUT, "/v1/tenants/" + BootstrapClient.segment(name) + "/quota", body: quota.quota)
                if client.json { print(String(buffer: raw)); return }
                print(TenantCommand.render(try api.decode(TenantDocument.self, raw)))
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a tenant that holds nothing and has no live token.")
        @Argument var name: String
        @OptionGroup var client: ClientOptions
        func run() async throws {
            try await reportingFailures {
                let api = try client.client()
                let raw = try await api.call(.DELETE, "/v1/tenants/" + BootstrapClient.segment(name))
                if client.json { print(String(buffer: raw)); return }
                print("tenant \(name) deleted")
            }
        }
    }

    static func render(_ tenant: TenantDocument) -> String {
        func line(_ used: Int, _ limit: Int?, unit: String = "") -> String {
            "\(used)\(unit) of " + (limit.map { "\($0)\(unit)" } ?? "unlimited")
        }
        return keyValueLines([("tenant", tenant.name), ("vms", line(tenant.usage.vms, tenant.quota.vms)),
                              ("vcpus", line(tenant.usage.vcpus, tenant.quota.vcpus)),
                              ("memory", line(tenant.usage.memoryMiB, tenant.quota.memoryMiB, unit: " MiB")),
                              ("floating ips", line(tenant.usage.floatingIPs, tenant.quota.floatingIPs))])
    }
}
