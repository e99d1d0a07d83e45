import ArgumentParser
import AsyncHTTPClient
import ClusterCore
import ClusterTransport
import ClusterWire
import Foundation
import NIOCore
import NIOHTTP1

// The client commands: `doze submit` and `doze vm …` talk to a bootstrap's native API (`/v1/…`), print tables
// for humans or the server's JSON with `--json`, and print every failure on stderr with a non-zero exit status.

// MARK: - Talking to the bootstrap

/// A failed client step, told to the user on stderr.
struct ClientError: Error, CustomStringConvertible {
    var message: String
    /// The HTTP status of the refusal; nil when no answer came (or nothing was sent).
    var status: Int?
    /// The server's error kind (`conflict`, `notFound`, …), when it gave one.
    var code: String?

    init(_ message: String, status: Int? = nil, code: String? = nil) {
        self.message = message
        self.status = status
        self.code = code
    }

    var description: String { message }

    /// Worth asking again: no answer, or the cluster was busy (e.g. a leader change).
    var isTransient: Bool { status == nil || status! >= 500 }
}

/// Runs a client command's body: a `ClientError` goes to stderr and the exit status is 1.
func reportingFailures(_ body: () async throws -> Void) async throws {
    do { try await body() } catch let error as ClientError {
        printError(error.message)
        throw ExitCode.failure
    }
}

func printError(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// Options every client command shares.
struct ClientOptions: ParsableArguments {
    @Option(help: "A bootstrap's HOST:PORT (default: DOZE_BOOTSTRAP, else 127.0.0.1:5000).")
    var bootstrap: String?

    @Flag(help: "Print the server's JSON instead of a table.")
    var json = false

    @Option(help: "API token (default: DOZE_TOKEN, else the file DOZE_TOKEN_FILE, else ~/.config/doze/token, where `doze cluster up` puts the admin token).")
    var token: String?

    @Option(help: "PEM CA to verify the bootstrap's certificate: talk HTTPS (default: DOZE_CA_FILE; none: plain HTTP).")
    var caFile: String?

    func validate() throws {
        _ = try endpoint()
        try ClientToken.install(explicit: token)
        if let ca = caFile ?? ProcessInfo.processInfo.environment["DOZE_CA_FILE"].flatMap({ $0.isEmpty ? nil : $0 }) {
            do { try PeerClient.useTLS(caFile: ca) } catch { throw ValidationError("cannot use the CA file \(ca): \(error)") }
        }
    }

    func endpoint() throws -> Endpoint {
        let text = bootstrap ?? ProcessInfo.processInfo.environment["DOZE_BOOTSTRAP"] ?? "127.0.0.1:5000"
        guard let endpoint = Endpoint(text) else { throw ValidationError("--bootstrap must be HOST:PORT, got '\(text)'") }
        return endpoint
    }

    func client() throws -> BootstrapClient { BootstrapClient(endpoint: try endpoint()) }
}

/// The bootstrap's native API: JSON in and out, errors as `{"error":{"code":…,"message":…}}` with an HTTP status.
struct BootstrapClient: Sendable {
    let endpoint: Endpoint
    let peers = PeerClient(timeout: .seconds(30), http: Self.http)

    /// Fails at once when nothing listens (the shared client retries connecting until the request's deadline).
    /// Never shut down: it lives as long as the command.
    static let http: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .seconds(5)
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    private struct ErrorBody: Decodable {
        struct Detail: Decodable {
            var code: String?
            var message: String
        }
        var error: Detail
    }

    /// The body of a 2xx answer; anything else throws with the server's own message.
    func call(_ method: HTTPMethod, _ path: String, body: (some Encodable & Sendable)? = nil as String?,
              timeout: Duration? = nil) async throws -> ByteBuffer {
        let status: Int
        let bytes: ByteBuffer
        do {
            (status, bytes) = try await peers.send(method, endpoint, path, body: body, timeout: timeout)
        } catch {
            var reason = (error as? PeerClient.Failure)?.message ?? "\(error)"
            if reason.contains("Connection refused") || reason.contains("connectionRefused") {
                reason = "connection refused (is the cluster up? scripts/run.sh starts one; --bootstrap or DOZE_BOOTSTRAP name another)"
            } else if reason.contains("deadlineExceeded") || reason.contains("connectTimeout") {
                reason = "no answer in time (\(reason))"
            }
            throw ClientError("cannot reach the bootstrap at \(endpoint): \(reason)")
        }
        guard (200..<300).contains(status) else {
            if let refusal = try? WireCoding.decoder().decode(ErrorBody.self, from: Data(bytes.readableBytesView)) {
                throw ClientError(refusal.error.message, status: status, code: refusal.error.code)
            }
            let text = String(buffer: bytes).trimmingCharacters(in: .whitespacesAndNewlines)
            throw ClientError("the bootstrap at \(endpoint) answered HTTP \(status)\(text.isEmpty ? "" : ": \(text)")", status: status)
        }
        return bytes
    }

    func decode<T: Decodable>(_ type: T.Type, _ bytes: ByteBuffer) throws -> T {
        do { return try WireCoding.decoder().decode(T.self, from: Data(bytes.readableBytesView)) } catch {
            throw ClientError("the bootstrap at \(endpoint) answered something that is not a \(T.self): \(String(buffer: bytes).prefix(200))")
        }
    }

    /// A path segment, escaped (VM names are plain, but a typo should not change the route).
    static func segment(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")) ?? text
    }
}

// MARK: - Showing VMs

extension VirtualMachineMetaData {
    var id: String { virtualMachineLocation.virtualMachineId }

    /// What a human should know beyond the status: the error, else what the host changed in the template.
    var note: String {
        if errorCode != .none { return errorCode.rawValue + (errorMessage.map { ": \($0)" } ?? "") }
        if let errorMessage, !errorMessage.isEmpty { return errorMessage }
        return (adaptations ?? []).joined(separator: "; ")
    }
}

extension NetworkAddress {
    /// `HOST:PORT`.
    var shown: String { address.isEmpty || port < 0 ? "-" : "\(address):\(port)" }
}

extension Optional<NetworkAddress> {
    /// `HOST:PORT`, or `-` while unknown.
    var shown: String { map(\.shown) ?? "-" }
}

/// The text, or `-` when there is none.
func orDash(_ text: String?) -> String { text.map { $0.isEmpty ? "-" : $0 } ?? "-" }

func mebibytes(_ kib: Double) -> String { kib > 0 ? String(Int((kib / 1024).rounded())) : "-" }

// MARK: - doze submit

struct SubmitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "submit", abstract: "Submit a virtual cluster of libvirt domain templates through the bootstrap.",
        discussion: """
            Each TEMPLATE is one libvirt domain XML file, one VM (named by its <name>). Without --wait, prints the \
            task id and returns; with --wait, shows progress (placed, running, failed) until every VM runs or \
            failed, then a table, and exits non-zero if any VM failed.
            """)

    @Argument(help: ArgumentHelp("libvirt domain XML files, one VM each.", valueName: "template"))
    var templates: [String]

    @Option(help: "Submit N copies of each template, named NAME-1 … NAME-N (a <uuid> is dropped from the copies).")
    var count: Int?

    @Flag(help: "Wait until every VM runs or failed, showing progress; exit non-zero if any VM failed.")
    var wait = false

    @Option(help: "Seconds --wait waits at most.")
    var timeout: Double = 300

    @Option(help: "Pin every VM to this group manager or local controller id.")
    var host: String?

    @Flag(help: "Mark every VM highly available: if its host dies, it is restarted on another host once that host is fenced.")
    var ha = false

    @Option(name: .customLong("network"), help: "Give every VM a NIC on this switch (doze network create); repeat for more, in order.")
    var networks: [String] = []

    @OptionGroup var client: ClientOptions

    func validate() throws {
        guard !templates.isEmpty else { throw ValidationError("give at least one TEMPLATE file") }
        if let count { guard (1...1000).contains(count) else { throw ValidationError("--count must be 1...1000, got \(count)") } }
        guard timeout > 0, timeout.isFinite else { throw ValidationError("--timeout must be > 0 seconds") }
    }

    func run() async throws {
        try await reportingFailures {
            // Every file is read and checked before anything is sent.
            var vms: [VirtualMachineTemplate] = []
            var origins: [String] = []   // where each submitted template came from, for the server's messages
            for path in templates {
                let xml = try DomainTemplate.read(path)
                if let count {
                    for copy in 1...count {
                        vms.append(VirtualMachineTemplate(libVirtTemplate: try DomainTemplate.copy(xml, number: copy, file: path), hostId: host))
                        origins.append("\(path), copy \(copy)")
                    }
                } else {
                    vms.append(VirtualMachineTemplate(libVirtTemplate: xml, hostId: host))
                    origins.append(path)
                }
            }
            if ha { for i in vms.indices { vms[i].ha = true } }
            if !networks.isEmpty { for i in vms.indices { vms[i].networks = networks } }
            let api = try client.client()
            let start = ContinuousClock.now
            let accepted: ByteBuffer
            do {
                accepted = try await api.call(.POST, "/v1/virtual-clusters", body: VirtualClusterSubmissionRequest(virtualMachineTemplates: vms))
            } catch var error as ClientError {
                error.message = Self.locate(error.message, origins)
                throw error
            }
            struct Accepted: Decodable { var taskId: String }
            let taskID = try api.decode(Accepted.self, accepted).taskId
            guard wait else {
                print(client.json ? String(buffer: accepted) : taskID)
                return
            }
            try await follow(taskID, api: api, since: start)
        }
    }

    /// Names the file behind `virtualMachineTemplates[i]` in a server message.
    static func locate(_ message: String, _ origins: [String]) -> String {
        guard let match = message.firstMatch(of: /virtualMachineTemplates\[(\d+)\]/), let index = Int(match.1), origins.indices.contains(index) else {
            return message
        }
        return message + " (template \(index) is \(origins[index]))"
    }

    /// Polls the task until it is done or the timeout passes; progress in place on a terminal, then the result.
    func follow(_ taskID: String, api: BootstrapClient, since start: ContinuousClock.Instant) async throws {
        let live = !client.json && isatty(STDOUT_FILENO) != 0
        let clock = ContinuousClock()
        let deadline = start + .milliseconds(Int64(min(max(timeout, 0), 1e9) * 1000))
        var last: (document: VirtualClusterTaskDocument, raw: ByteBuffer)?
        var trouble: ClientError?
        var shown = 0
        while clock.now < deadline {
            // Short waits keep a terminal live; otherwise the server answers early anyway once the task is done.
            let wait = min(deadline - clock.now, live ? .milliseconds(200) : .seconds(10))
            let seconds = Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18
            do {
                let raw = try await api.call(.GET, "/v1/virtual-clusters/\(BootstrapClient.segment(taskID))?wait=\(String(format: "%.3f", seconds))",
                                             timeout: wait + .seconds(30))
                let document = try api.decode(VirtualClusterTaskDocument.self, raw)
                last = (document, raw)
                trouble = nil
                if live {
                    let line = Self.progress(document, taskID: taskID, elapsed: start.duration(to: clock.now))
                    print("\r" + line + String(repeating: " ", count: max(0, shown - line.count)), terminator: "")
                    fflush(nil)
                    shown = line.count
                }
                if document.state == .done { break }
            } catch let error as ClientError where error.isTransient {
                // The leader may be changing: ask again until the deadline.
                trouble = error
                try await Task.sleep(for: .milliseconds(250))
            }
        }
        if shown > 0 { print("") }
        guard let (document, raw) = last else {
            throw ClientError("no news of task \(taskID) within \(Int(timeout)) s: \(trouble?.message ?? "no answer")")
        }
        if client.json {
            print(String(buffer: raw))
        } else {
            if !live { print(Self.progress(document, taskID: taskID, elapsed: start.duration(to: clock.now))) }
            var table = TextTable("VM", "STATUS", "IP", "LOCAL CONTROLLER", "GROUP MANAGER", "NOTE")
            for vm in document.response.virtualMachineMetaData {
                let location = vm.virtualMachineLocation
                table.add([vm.id, vm.status.rawValue, orDash(vm.ipAddress), location.localControllerControlDataAddress.shown,
                           location.groupManagerControlDataAddress.shown, vm.note])
            }
            print(table.render())
        }
        if let code = document.response.errorCode { printError("the virtual cluster failed: \(code.rawValue)") }
        if document.state != .done {
            printError("timed out after \(Int(timeout)) s with \(document.counts.pending) of \(document.counts.total) VMs pending; "
                       + "the cluster goes on with task \(taskID)" + (trouble.map { " (last error: \($0.message))" } ?? ""))
            throw ExitCode.failure
        }
        if document.counts.failed > 0 {
            if !client.json { printError("\(document.counts.failed) of \(document.counts.total) VMs failed") }
            throw ExitCode.failure
        }
    }

    static func progress(_ document: VirtualClusterTaskDocument, taskID: String, elapsed: Duration) -> String {
        let total = document.counts.total
        let placed = document.response.virtualMachineMetaData.filter { $0.virtualMachineLocation.groupManagerId != nil }.count
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return "task \(taskID)  placed \(placed)/\(total)  running \(document.counts.running)/\(total)  failed \(document.counts.failed)/\(total)  "
            + String(format: "%.1f s", seconds)
    }
}

/// Reading domain templates and numbering copies of them, without an XML library: only the root element's
/// direct `<name>` and `<uuid>` children are touched; everything else is passed through byte for byte.
enum DomainTemplate {
    static func read(_ path: String) throws -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ClientError("cannot read template \(path): no such file")
        }
        guard !isDirectory.boolValue else { throw ClientError("cannot read template \(path): it is a directory") }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ClientError("cannot read template \(path): permission denied or unreadable")
        }
        guard let xml = String(data: data, encoding: .utf8) else { throw ClientError("template \(path) is not UTF-8 text") }
        let root = try scan(xml, file: path).root
        guard root == "domain" else {
            throw ClientError("template \(path) is not a libvirt domain: its root element is \(root.map { "<\($0)>" } ?? "missing")")
        }
        return xml
    }

    /// Copy `number`: the root `<name>` gets `-number` appended and a root `<uuid>` is removed (each copy gets its own).
    static func copy(_ xml: String, number: Int, file: String) throws -> String {
        let found = try scan(xml, file: file)
        guard let name = found.name else { throw ClientError("template \(file) has no <name> to number its copies after") }
        var bytes = Array(xml.utf8)
        var edits: [(Range<Int>, [UInt8])] = [(name, Array((String(decoding: bytes[name], as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines) + "-\(number)").utf8))]
        if var uuid = found.uuid {
            // Take the line with it when the element stands alone on it.
            var lower = uuid.lowerBound
            while lower > 0, bytes[lower - 1] == UInt8(ascii: " ") || bytes[lower - 1] == UInt8(ascii: "\t") { lower -= 1 }
            if lower == 0 || bytes[lower - 1] == UInt8(ascii: "\n"), uuid.upperBound < bytes.count, bytes[uuid.upperBound] == UInt8(ascii: "\n") {
                uuid = lower..<(uuid.upperBound + 1)
            }
            edits.append((uuid, []))
        }
        for (range, replacement) in edits.sorted(by: { $0.0.lowerBound > $1.0.lowerBound }) {
            bytes.replaceSubrange(range, with: replacement)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The root element's name, the byte range of the root `<name>`'s text and of the whole root `<uuid>` element.
    static func scan(_ xml: String, file: String) throws -> (root: String?, name: Range<Int>?, uuid: Range<Int>?) {
        let bytes = Array(xml.utf8)
        func starts(_ prefix: String, at position: Int) -> Bool {
            let wanted = prefix.utf8
            return position + wanted.count <= bytes.count && bytes[position..<(position + wanted.count)].elementsEqual(wanted)
        }
        func find(_ needle: String, from: Int) -> Int? {
            var position = from
            while position < bytes.count {
                if starts(needle, at: position) { return position }
                position += 1
            }
            return nil
        }
        func malformed(_ why: String) -> ClientError { ClientError("template \(file) is not well-formed XML: \(why)") }
        var root: String?
        var name: Range<Int>?
        var uuid: Range<Int>?
        var depth = 0
        var position = 0
        while let open = find("<", from: position) {
            if starts("<!--", at: open) {
                guard let close = find("-->", from: open + 4) else { throw malformed("an unterminated comment") }
                position = close + 3
                continue
            }
            if starts("<![CDATA[", at: open) {
                guard let close = find("]]>", from: open + 9) else { throw malformed("an unterminated CDATA section") }
                position = close + 3
                continue
            }
            // The end of this tag, with quoted attribute values skipped.
            var tagEnd = open + 1
            var quote: UInt8?
            while tagEnd < bytes.count {
                if let delimiter = quote { if bytes[tagEnd] == delimiter { quote = nil } } else if bytes[tagEnd] == UInt8(ascii: "'") || bytes[tagEnd] == UInt8(ascii: "\"") { quote = bytes[tagEnd] } else if bytes[tagEnd] == UInt8(ascii: ">") { break }
                tagEnd += 1
            }
            guard tagEnd < bytes.count else { throw malformed("an unterminated tag") }
            let first = open + 1 < bytes.count ? bytes[open + 1] : 0
            if first == UInt8(ascii: "?") || first == UInt8(ascii: "!") {
                position = tagEnd + 1
                continue
            }
            if first == UInt8(ascii: "/") {
                depth -= 1
                position = tagEnd + 1
                continue
            }
            var nameEnd = open + 1
            while nameEnd < tagEnd, ![UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "/")].contains(bytes[nameEnd]) { nameEnd += 1 }
            let tag = String(decoding: bytes[(open + 1)..<nameEnd], as: UTF8.self)
            let selfClosing = bytes[tagEnd - 1] == UInt8(ascii: "/")
            if depth == 0 && root == nil { root = tag }
            if depth == 1 && !selfClosing && (tag == "name" || tag == "uuid") {
                guard let close = find("</\(tag)>", from: tagEnd + 1) else { throw malformed("<\(tag)> is never closed") }
                if tag == "name" && name == nil { name = (tagEnd + 1)..<close }
                if tag == "uuid" && uuid == nil { uuid = open..<(close + tag.utf8.count + 3) }
            }
            if !selfClosing { depth += 1 }
            position = tagEnd + 1
        }
        return (root, name, uuid)
    }
}

// MARK: - doze vm

struct VMCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vm", abstract: "List, show and control the cluster's VMs through the bootstrap.",
        subcommands: [List.self, Show.self, Suspend.self, Resume.self, Shutdown.self, Reboot.self, Destroy.self, Resize.self, Migrate.self, Load.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every VM of the cluster, with where it runs.")

        @OptionGroup var client: ClientOptions

        func run() async throws {
            try await reportingFailures {
                let api = try client.client()
                let raw = try await api.call(.GET, "/v1/vms")
                if client.json {
                    print(String(buffer: raw))
                    return
                }
                let vms = try api.decode(VirtualMachineList.self, raw).virtualMachines
                var table = TextTable("VM", "STATUS", "IP", "VCPUS", "MEMORY MiB", "LOCAL CONTROLLER", "GROUP MANAGER")
                for vm in vms.sorted(by: { $0.id < $1.id }) {
                    let requested = vm.requested
                    table.add([vm.id, vm.status.rawValue, orDash(vm.ipAddress), requested.vcpus > 0 ? String(Int(requested.vcpus)) : "-", mebibytes(requested.memoryKiB),
                               vm.virtualMachineLocation.localControllerControlDataAddress.shown,
                               vm.virtualMachineLocation.groupManagerControlDataAddress.shown])
                }
                print(vms.isEmpty ? "no VMs in the cluster" : table.render())
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One VM: status, address, size, where it runs.")

        @Argument(help: "The VM's id (its name).")
        var id: String

        @Flag(help: "Also print the VM's domain XML.")
        var xml = false

        @OptionGroup var client: ClientOptions

        func run() async throws {
            try await reportingFailures {
                let api = try client.client()
                let raw = try await api.call(.GET, "/v1/vms/\(BootstrapClient.segment(id))")
                if client.json {
                    print(String(buffer: raw))
                    return
                }
                let vm = try api.decode(VirtualMachineMetaData.self, raw)
                let location = vm.virtualMachineLocation
                let requested = vm.requested
                var lines: [(String, String)] = [
                    ("vm", vm.id), ("status", vm.status.rawValue), ("ip", orDash(vm.ipAddress)),
                    ("vcpus", requested.vcpus > 0 ? String(Int(requested.vcpus)) : "-"), ("memory MiB", mebibytes(requested.memoryKiB)),
                    ("local controller", "\(orDash(location.localControllerId))  \(location.localControllerControlDataAddress.shown)"),
                    ("group manager", "\(orDash(location.groupManagerId))  \(location.groupManagerControlDataAddress.shown)"),
                ]
                if requested.rxBytes > 0 || requested.txBytes > 0 { lines.append(("network B/s", "rx \(Int(requested.rxBytes))  tx \(Int(requested.txBytes))")) }
                if vm.ha == true { lines.append(("ha", "yes: restarted on another host if this one dies (once it is fenced)")) }
                if let image = vm.imageId { lines.append(("image", image)) }
                if let nics = vm.networks, !nics.isEmpty {
                    // Floating IPs are the leader's books: joined here.
                    let floating = (try? await api.call(.GET, "/v1/floating-ips")).flatMap { try? api.decode(FloatingIPList.self, $0) }?.floatingIPs ?? []
                    for nic in nics {
                        let fip = floating.first { $0.vm == vm.id && $0.privateIP == nic.ip }.map { ", floating IP \($0.address)" } ?? ""
                        lines.append(("network", "\(nic.network): \(nic.ip)/\(nic.prefixLength) via \(nic.gateway), mac \(nic.mac)\(fip)"))
                    }
                }
                if vm.errorCode != .none || !(vm.errorMessage ?? "").isEmpty { lines.append(("error", vm.note)) }
                for adaptation in vm.adaptations ?? [] { lines.append(("adapted", adaptation)) }
                // Use as the manager's window estimates it; a VM not sampled yet has none (503), not zeros.
                if vm.status == .running, let raw = try? await api.call(.GET, "/v1/vms/\(BootstrapClient.segment(id))/usage"),
                   let usage = try? api.decode(ClusterVMUsage.self, raw) {
                    lines.append(("in use", String(format: "%.2f of %d vCPUs, %.0f MiB", usage.vcpusInUse, usage.vcpus, usage.memoryUsedMiB)
                        + String(format: ", rx %.0f B/s, tx %.0f B/s", usage.rxBytesPerSecond, usage.txBytesPerSecond)
                        + (usage.synthetic ? " (declared)" : "")))
                }
                print(keyValueLines(lines))
                if xml { print("xml:\n" + vm.xmlRepresentation.trimmingCharacters(in: .newlines)) }
            }
        }
    }

    /// The ids and options of suspend, resume, shutdown, reboot and destroy.
    struct ControlOptions: ParsableArguments {
        @Argument(help: "VM ids (names).")
        var ids: [String]

        @OptionGroup var client: ClientOptions

        func validate() throws {
            guard !ids.isEmpty else { throw ValidationError("give at least one VM id") }
        }

        /// One line per VM (failures on stderr), or with `--json` one array of the VMs' documents and errors.
        func run(_ operation: VMControl) async throws {
            try await reportingFailures {
                let api = try client.client()
                var documents: [Any] = []
                var failed = 0
                for id in ids {
                    do {
                        let raw = try await api.call(.POST, "/v1/vms/\(BootstrapClient.segment(id))/\(operation.rawValue)", body: "")
                        let vm = try api.decode(VirtualMachineMetaData.self, raw)
                        documents.append((try? JSONSerialization.jsonObject(with: Data(raw.readableBytesView))) ?? [:])
                        if !client.json { print("\(id): \(operation == .destroy ? "destroyed" : vm.status.rawValue)") }
                    } catch let error as ClientError {
                        failed += 1
                        printError("\(id): \(error.message)")
                        let detail: [String: Any] = ["code": error.code ?? "unreachable", "message": error.message, "status": error.status ?? 0]
                        documents.append(["virtualMachineId": id, "error": detail] as [String: Any])
                    }
                }
                if client.json {
                    let data = try JSONSerialization.data(withJSONObject: documents, options: [.sortedKeys, .withoutEscapingSlashes])
                    print(String(decoding: data, as: UTF8.self))
                }
                if failed > 0 { throw ExitCode.failure }
            }
        }
    }

    struct Suspend: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Pause running VMs.")
        @OptionGroup var options: ControlOptions
        func run() async throws { try await options.run(.suspend) }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Resume paused VMs.")
        @OptionGroup var options: ControlOptions
        func run() async throws { try await options.run(.resume) }
    }

    struct Shutdown: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Ask running VMs to shut down (ACPI).")
        @OptionGroup var options: ControlOptions
        func run() async throws { try await options.run(.shutdown) }
    }

    struct Reboot: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Reboot running VMs.")
        @OptionGroup var options: ControlOptions
        func run() async throws { try await options.run(.reboot) }
    }

    struct Destroy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop VMs and remove them from their hosts.")
        @OptionGroup var options: ControlOptions
        func run() async throws { try await options.run(.destroy) }
    }

    struct Resize: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change a running VM's vCPUs and/or memory (within its domain maximum).")

        @Argument(help: "The VM's id (its name).")
        var id: String

        @Option(help: "New number of vCPUs.")
        var vcpus: Int?

        @Option(help: "New memory in MiB.")
        var memoryMib: Int?

        @OptionGroup var client: ClientOptions

        func validate() throws {
            guard vcpus != nil || memoryMib != nil else { throw ValidationError("give --vcpus and/or --memory-mib") }
            if let vcpus { guard vcpus > 0 else { throw ValidationError("--vcpus must be > 0") } }
            if let memoryMib { guard memoryMib > 0 else { throw ValidationError("--memory-mib must be > 0") } }
        }

        func run() async throws {
            try await reportingFailures {
                let api = try client.client()
                let raw = try await api.call(.POST, "/v1/vms/\(BootstrapClient.segment(id))/resize",
                                             body: NativeResizeBody(vcpus: vcpus, memoryMiB: memoryMib))
                if client.json {
                    print(String(buffer: raw))
                    return
                }
                let vm = try api.decode(VirtualMachineMetaData.self, raw)
                print("\(id): \(Int(vm.requested.vcpus)) vCPUs, \(mebibytes(vm.requested.memoryKiB)) MiB, \(vm.status.rawValue)")
            }
        }
    }
}

/// `POST /v1/vms/{id}/resize`'s body (ClusterAPI's `NativeResize`; the doze target does not link ClusterAPI).
struct NativeResizeBody: Encodable, Sendable {
    var vcpus: Int?
    var memoryMiB: Int?
}
