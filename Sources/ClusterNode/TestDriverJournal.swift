import Foundation
import Hypervisor
#if canImport(FoundationXML)
import FoundationXML
#endif

/// libvirt's test driver keeps a host in the memory of the process that opened it, so a fake host would
/// forget its domains whenever `doze lc` restarts — unlike a real host, whose domains outlive the controller.
/// To make the embedded default behave like a real host, the controller journals every domain change to
/// `STATE/testhost/journal.log` and, on the next start, opens a host file composed from the original host
/// file's node description (CPUs, memory, networks) plus the journal's domains.
///
/// The journal is an append-only JSON-lines log written with one `write(2)` per change on an open file:
/// creating and renaming a file per change cost ~0.5 ms on these disks, an append ~2 µs. A `kill -9` loses
/// nothing that was acknowledged (the bytes are in the page cache when the call returns). Each start compacts it.
/// (Named for libvirt's `test` driver whose hosts it keeps: production code, not a test helper.)
struct TestDriverJournal {
    static let testNamespace = "http://libvirt.org/schemas/domain/test/1.0"

    struct Entry: Codable, Equatable {
        var uuid: String
        var xml: String?
        var runstate: Int?
        var persistent: Bool?
        var deleted: Bool?
    }

    struct Domain: Equatable {
        var xml: String
        var runstate: Int
        var persistent: Bool
    }

    let baseFile: String
    let directory: String
    private(set) var domains: [String: Domain] = [:]
    private var fd: Int32 = -1

    /// A journal for `test:///ABSOLUTE.xml` URIs; nil for every other URI (real hosts keep their own state).
    init?(uri: String, stateDirectory: String) {
        guard uri.hasPrefix("test:///"), uri != "test:///default" else { return nil }
        let path = String(uri.dropFirst("test://".count))
        guard path.hasPrefix("/"), !path.contains("?") else { return nil }
        self.baseFile = path
        self.directory = stateDirectory + "/testhost"
    }

    var logPath: String { directory + "/journal.log" }
    var isInitialized: Bool { FileManager.default.fileExists(atPath: logPath) }

    /// The URI to open: the original host file the first time; afterwards a host file composed from the journal,
    /// which is replayed and compacted here.
    mutating func prepare() throws -> String {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        guard isInitialized else { return "test://" + baseFile }
        domains = Self.replay(logPath)
        try compact()
        let composed = directory + "/host.xml"
        try compose().write(toFile: composed, atomically: true, encoding: .utf8)
        return "test://" + composed
    }

    /// After the first open: record every domain the original file defined, so the journal is complete.
    mutating func initialize(with existing: [(info: DomainInfo, xml: String)]) throws {
        for original in existing { domains[original.info.uuid] = Self.domain(original.info, xml: original.xml) }
        try compact()
    }

    /// Reads the log; a torn last line (a crash mid-append) is ignored.
    static func replay(_ path: String) -> [String: Domain] {
        var result: [String: Domain] = [:]
        guard let data = FileManager.default.contents(atPath: path) else { return result }
        let decoder = JSONDecoder()
        for line in data.split(separator: 0x0A) {
            guard let entry = try? decoder.decode(Entry.self, from: line) else { continue }
            if entry.deleted == true { result[entry.uuid] = nil; continue }
            guard let runstate = entry.runstate, let persistent = entry.persistent, let xml = entry.xml ?? result[entry.uuid]?.xml else { continue }
            result[entry.uuid] = Domain(xml: xml, runstate: runstate, persistent: persistent)
        }
        return result
    }

    /// Rewrites the log with one entry per live domain and opens it for appending.
    private mutating func compact() throws {
        let encoder = JSONEncoder()
        var data = Data()
        for (uuid, d) in domains.sorted(by: { $0.key < $1.key }) {
            data.append(try encoder.encode(Entry(uuid: uuid, xml: d.xml, runstate: d.runstate, persistent: d.persistent)))
            data.append(0x0A)
        }
        try data.write(to: URL(fileURLWithPath: logPath), options: .atomic)
        if fd >= 0 { close(fd) }
        fd = open(logPath, O_WRONLY | O_APPEND | O_CLOEXEC)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    }

    /// The test driver's runstate: 1 running, 3 paused, 5 shut off.
    static func domain(_ info: DomainInfo, xml: String) -> Domain {
        let runstate: Int
        switch info.state {
        case .paused, .suspendedToMemory: runstate = 3
        case .shutOff, .crashed, .noState: runstate = 5
        default: runstate = 1
        }
        return Domain(xml: xml, runstate: runstate, persistent: info.persistent)
    }

    /// Records the domain's state; `xml` may be nil when only the state changed. Unchanged domains write nothing.
    mutating func record(_ info: DomainInfo, xml: String?) throws {
        guard let xml = xml ?? domains[info.uuid]?.xml else { return }
        let next = Self.domain(info, xml: xml)
        // A transient domain that stopped is gone (the test driver cannot even load one that is shut off).
        if !next.persistent && next.runstate == 5 { forget(uuid: info.uuid); return }
        let previous = domains[info.uuid]
        guard previous != next else { return }
        domains[info.uuid] = next
        try append(Entry(uuid: info.uuid, xml: previous?.xml == xml ? nil : xml, runstate: next.runstate, persistent: next.persistent))
    }

    mutating func forget(uuid: String) {
        guard domains.removeValue(forKey: uuid) != nil else { return }
        try? append(Entry(uuid: uuid, deleted: true))
    }

    private func append(_ entry: Entry) throws {
        var line = try JSONEncoder().encode(entry)
        line.append(0x0A)
        let written = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == line.count else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    }

    /// The node description of the original file with its domains replaced by the journal's.
    func compose() throws -> String {
        let doc = try XMLDocument(contentsOf: URL(fileURLWithPath: baseFile), options: [])
        guard let root = doc.rootElement(), root.name == "node" else {
            throw HypervisorError(.invalidSpec, "\(baseFile): the root element must be <node>")
        }
        for child in root.elements(forName: "domain") { child.detach() }
        if root.namespace(forPrefix: "test") == nil {
            root.addNamespace(XMLNode.namespace(withName: "test", stringValue: Self.testNamespace) as! XMLNode)
        }
        var text = doc.xmlString
        guard let end = text.range(of: "</node>", options: .backwards) else {
            throw HypervisorError(.invalidSpec, "\(baseFile): no closing </node>")
        }
        var entries = ""
        for (_, d) in domains.sorted(by: { $0.key < $1.key }) {
            guard let close = d.xml.range(of: "</domain>", options: .backwards) else { continue }
            var entry = d.xml
            entry.insert(contentsOf: "<test:runstate>\(d.runstate)</test:runstate>" + (d.persistent ? "" : "<test:transient/>"),
                         at: close.lowerBound)
            entries += entry + "\n"
        }
        text.insert(contentsOf: entries, at: end.lowerBound)
        return text
    }
}
