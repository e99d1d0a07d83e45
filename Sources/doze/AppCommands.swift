import ArgumentParser
import ClusterCore
import ClusterTransport
import ClusterWire
import Foundation
import NIOCore
import NIOHTTP1

/// `doze app …`: seed 000's kvm-apps through a bootstrap's `/v1/kvm-apps`. Human tables by default, the API's
/// JSON with `--json`; a refusal prints the API's message and exits non-zero.
struct AppCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "app", abstract: "Create and run kvm-apps: N identical VMs from one image of the hosts' image pools.",
        subcommands: [Create.self, List.self, Show.self, Start.self, Stop.self, Suspend.self, Resume.self, Delete.self])

    /// `--bootstrap` (default: DOZE_BOOTSTRAP, else 127.0.0.1:5000) and `--json`, as every client command.
    typealias Options = ClientOptions

    // MARK: - create

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create an app: COUNT VMs named <index>.<name>.<runas>.<cluster>.",
            discussion: """
                Either flags, or --file with the seed's JSON body ({"count","cpus","mems","disks","image":{"type","uri"},
                "vnc":{"password"},"constraints":[{"attribute":"hostname","operator":"~=","value":"107"}]}).
                Examples:
                  doze app create demo --runas bbk --cluster bj --count 3 --mems 512 --image cirros.qcow2 --wait
                  doze app create web --count 2 --image centos.iso --constraint 'hostname~=^10\\.1\\.' --vnc-password secret
                """)

        @Argument(help: "The app's name (letters, digits, '-', '_').")
        var name: String

        @Option(help: "Who runs it (default: $USER).")
        var runas: String?

        @Option(help: "The cluster label of the app id.")
        var cluster = "default"

        @Option(help: "The seed's JSON create body; the flags below are then not used.")
        var file: String?

        @Option(help: "How many VMs.")
        var count = 1

        @Option(help: "vCPUs per VM.")
        var cpus = 1

        @Option(help: "Memory per VM, MiB.")
        var mems = 512

        @Option(help: "A data volume per VM, GiB (qcow2 on its host, deleted with it); 0: none.")
        var disks = 0

        @Option(help: "Image file name in every local controller's image pool.")
        var image: String?

        @Option(help: "iso or qcow2 (default: from the image's extension, else qcow2).")
        var imageType: String?

        @Option(help: "Give each VM a VNC console with this password (at most 8 characters).")
        var vncPassword: String?

        @Option(help: "A placement constraint, e.g. 'hostname==10.0.0.7', 'hostname!=10.0.0.8', 'hostname~=^10\\.0\\.' (repeatable).")
        var constraint: [String] = []

        @Option(help: "A description.")
        var desc: String?

        @Flag(help: "Make the app's VMs highly available: restarted on another host when theirs dies, once it is fenced.")
        var ha = false

        @Flag(help: "Wait (up to 2 minutes) until every VM has started or failed, then show the tasks.")
        var wait = false

        @OptionGroup var options: Options

        func body() throws -> String {
            if let file {
                guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { throw ValidationError("cannot read --file \(file)") }
                return text
            }
            guard let image else { throw ValidationError("give --image (a file of the hosts' image pools) or --file") }
            let type = imageType ?? (image.lowercased().hasSuffix(".iso") ? "iso" : "qcow2")
            let constraints = try constraint.map(Self.parseConstraint)
            let request = KVMAppCreateRequest(count: count, cpus: cpus, mems: mems, disks: disks, image: .init(type: type, uri: image),
                                              vnc: vncPassword.map { .init(password: $0) }, constraints: constraints.isEmpty ? nil : constraints,
                                              desc: desc)
            var body = request
            if ha { body.ha = true }
            return String(decoding: try WireCoding.encoder().encode(body), as: UTF8.self)
        }

        /// `hostname~=107`, `hostname == x`: attribute, operator, value.
        static func parseConstraint(_ text: String) throws -> KVMAppCreateRequest.Constraint {
            let found = ["==", "!=", "~="].compactMap { op in text.range(of: op).map { (op, $0) } }.min { $0.1.lowerBound < $1.1.lowerBound }
            guard let (op, range) = found else {
                throw ValidationError("--constraint '\(text)' needs an operator: ATTRIBUTE==VALUE, ATTRIBUTE!=VALUE or ATTRIBUTE~=REGEX")
            }
            let attribute = text[..<range.lowerBound].trimmingCharacters(in: .whitespaces)
            let value = text[range.upperBound...].trimmingCharacters(in: .whitespaces)
            return .init(attribute: attribute, operator: op, value: value)
        }

        func run() async throws {
            let runAs = runas ?? ProcessInfo.processInfo.environment["USER"] ?? "doze"
            func query(_ value: String) -> String { value.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? value }
            let created = try await appCall(options, .POST, "/v1/kvm-apps?name=\(query(name))&runas=\(query(runAs))&cluster=\(query(cluster))",
                                            body: try body(), as: KVMAppCreated.self)
            guard wait else {
                if options.json { printJSON(KVMAppCreated(id: created.id)) } else { print("created \(created.id); follow it with: doze app show \(created.id)") }
                return
            }
            let deadline = ContinuousClock.now + .seconds(120)
            var tasks: [KVMAppTaskEntry] = []
            // Until the pipeline has settled every VM (a controller may report a VM running a moment before that).
            while true {
                let app = try await appCall(options, .GET, "/v1/kvm-apps", as: [KVMAppEntry].self).first { $0.id == created.id }
                if app?.operationStatus != "creating" || ContinuousClock.now > deadline { break }
                try await Task.sleep(for: .milliseconds(250))
            }
            tasks = try await appCall(options, .GET, "/v1/kvm-apps/\(created.id)", as: [KVMAppTaskEntry].self)
            if options.json { printJSON(tasks) } else { print(renderAppTasks(tasks)) }
            if tasks.contains(where: { $0.status == "pending" }) {
                printError("\(created.id): some VMs are still pending after 2 minutes")
                throw ExitCode.failure
            }
            if tasks.contains(where: { $0.status == "KvmStartFailed" }) { throw ExitCode.failure }
        }
    }

    // MARK: - list, show

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every app: its tasks' statuses and the operation under way.")
        @OptionGroup var options: Options

        func run() async throws {
            let apps = try await appCall(options, .GET, "/v1/kvm-apps", as: [KVMAppEntry].self)
            if options.json { return printJSON(apps) }
            guard !apps.isEmpty else { return print("no kvm-app (create one with: doze app create NAME --image FILE)") }
            let rows = apps.map { app in
                [app.id, "\(app.taskCount)", tasksSummary(app.tasksStatus), app.operationStatus, "\(app.config.cpus)/\(app.config.mems)",
                 app.config.image.uri ?? "", app.createdAt, app.errmsg]
            }
            print(renderAppTable(["ID", "TASKS", "STATUS", "OPERATION", "CPUS/MiB", "IMAGE", "CREATED", "ERROR"], rows))
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One app's tasks: status, last operation, address, VNC console, host.")
        @Argument(help: "The app id, name.runas.cluster.")
        var id: String
        @OptionGroup var options: Options

        func run() async throws {
            let tasks = try await appCall(options, .GET, "/v1/kvm-apps/\(appPath(id))", as: [KVMAppTaskEntry].self)
            if options.json { printJSON(tasks) } else { print(renderAppTasks(tasks)) }
        }
    }

    // MARK: - operations

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start every stopped VM of the app.")
        @Argument(help: "The app id.") var id: String
        @OptionGroup var options: Options
        func run() async throws { try await operate(.start, id, options) }
    }

    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Shut every running VM of the app down (ACPI; the guest powers off).")
        @Argument(help: "The app id.") var id: String
        @OptionGroup var options: Options
        func run() async throws { try await operate(.stop, id, options) }
    }

    struct Suspend: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Pause every running VM of the app.")
        @Argument(help: "The app id.") var id: String
        @OptionGroup var options: Options
        func run() async throws { try await operate(.suspend, id, options) }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Resume every paused VM of the app.")
        @Argument(help: "The app id.") var id: String
        @OptionGroup var options: Options
        func run() async throws { try await operate(.resume, id, options) }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Destroy every VM of the app and forget it.")
        @Argument(help: "The app id.") var id: String
        @OptionGroup var options: Options

        func run() async throws {
            let gone = try await appCall(options, .DELETE, "/v1/kvm-apps/\(appPath(id))", as: KVMAppCreated.self, timeout: .seconds(160))
            if options.json { printJSON(gone) } else { print("deleted \(gone.id)") }
        }
    }

    static func operate(_ operation: KVMAppOperation, _ id: String, _ options: Options) async throws {
        let app = try await appCall(options, .POST, "/v1/kvm-apps/\(appPath(id))/\(operation.rawValue)", as: KVMAppEntry.self, timeout: .seconds(160))
        if options.json { return printJSON(app) }
        print("\(app.id): \(operation.rawValue) done; tasks: \(tasksSummary(app.tasksStatus))")
    }
}

// MARK: - HTTP and rendering

/// The API's answer decoded; a refusal or an unreachable bootstrap is printed and ends the command.
private func appCall<T: Decodable>(_ options: AppCommand.Options, _ method: HTTPMethod, _ path: String, body: String? = nil,
                                   as: T.Type, timeout: Duration = .seconds(45)) async throws -> T {
    let endpoint = try options.endpoint()
    let status: Int, answer: ByteBuffer
    do {
        (status, answer) = try await PeerClient(timeout: timeout).send(method, endpoint, path, body: body)
    } catch {
        printError("cannot reach the bootstrap at \(endpoint): \(error)")
        throw ExitCode.failure
    }
    let data = Data(answer.readableBytesView)
    guard (200..<300).contains(status) else {
        let message = (try? JSONDecoder().decode(AppRefusal.self, from: data))?.error.message ?? String(decoding: data, as: UTF8.self)
        printError("\(message) (HTTP \(status))")
        throw ExitCode.failure
    }
    do { return try JSONDecoder().decode(T.self, from: data) } catch {
        printError("unreadable answer from \(endpoint)\(path): \(error)")
        throw ExitCode.failure
    }
}

/// The API's error body, `{"error":{"code","message"}}`.
private struct AppRefusal: Decodable {
    struct Detail: Decodable { var message: String }
    var error: Detail
}

private func appPath(_ id: String) -> String { id.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? id }

private func printJSON(_ value: some Encodable) {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: (try? encoder.encode(value)) ?? Data(), as: UTF8.self))
}

/// `2 TASK_RUNNING, 1 pending`, most frequent first.
private func tasksSummary(_ counts: [String: Int]) -> String {
    counts.isEmpty ? "-" : counts.sorted { ($1.value, $0.key) < ($0.value, $1.key) }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
}

private func renderAppTasks(_ tasks: [KVMAppTaskEntry]) -> String {
    let rows = tasks.map { task in
        [task.name, task.status, task.opstatus.isEmpty ? "-" : task.opstatus, task.ipAddr.isEmpty ? "-" : task.ipAddr,
         task.vncAddr.isEmpty ? "-" : task.vncAddr, task.agentId.isEmpty ? "-" : String(task.agentId.prefix(8)), task.errmsg]
    }
    return renderAppTable(["NAME", "STATUS", "OPSTATUS", "IP", "VNC", "HOST", "ERROR"], rows)
}

/// Columns as wide as their widest cell; the last column is not padded.
private func renderAppTable(_ header: [String], _ rows: [[String]]) -> String {
    let all = [header] + rows
    let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
    return all.map { row in
        row.indices.map { column in
            column == row.count - 1 ? row[column] : row[column].padding(toLength: widths[column] + 2, withPad: " ", startingAt: 0)
        }.joined().trimmingCharacters(in: .whitespaces)
    }.joined(separator: "\n")
}
