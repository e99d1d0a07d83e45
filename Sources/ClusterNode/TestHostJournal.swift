import Foundation
import Hypervisor
#if canImport(FoundationXML)
import FoundationXML
#endif

/// libvirt's test driver keeps a host in the memory of the process that opened it, so a fake host would
/// forget its domains whenever `doze lc` restarts — unlike a real host, whose domains outlive the controller.
/// To make the embedded default behave like a real host, the controller journals every domain it changes to
/// `STATE/testhost/domains/UUID.xml` and, on the next start, opens a host file composed from the original
/// host file's node description (CPUs, memory, networks) plus the journal.
struct TestHostJournal {
    static let testNamespace = "http://libvirt.org/schemas/domain/test/1.0"

    let baseFile: String
    let directory: String
    private var xmlCache: [String: String] = [:]     // uuid → domain XML last written

    /// A journal for `test:///ABSOLUTE.xml` URIs; nil for every other URI (real hosts keep their own state).
    init?(uri: String, stateDirectory: String) {
        guard uri.hasPrefix("test:///"), uri != "test:///default" else { return nil }
        let path = String(uri.dropFirst("test://".count))
        guard path.hasPrefix("/"), !path.contains("?") else { return nil }
        self.baseFile = path
        self.directory = stateDirectory + "/testhost"
    }

    var domainsDirectory: String { directory + "/domains" }
    var isInitialized: Bool { FileManager.default.fileExists(atPath: directory + "/initialized") }

    /// The URI to open: the original host file the first time, the composed one afterwards.
    func prepare() throws -> String {
        try FileManager.default.createDirectory(atPath: domainsDirectory, withIntermediateDirectories: true)
        guard isInitialized else { return "test://" + baseFile }
        let composed = directory + "/host.xml"
        try compose().write(toFile: composed, atomically: true, encoding: .utf8)
        return "test://" + composed
    }

    /// After the first open: record every domain the original file defined, so the journal is complete.
    mutating func initialize(with domains: [(info: DomainInfo, xml: String)]) throws {
        for d in domains { try record(d.info, xml: d.xml) }
        FileManager.default.createFile(atPath: directory + "/initialized", contents: Data())
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
        var domains = ""
        let names = (try? FileManager.default.contentsOfDirectory(atPath: domainsDirectory)) ?? []
        for name in names.sorted() where name.hasSuffix(".xml") {
            if let entry = try? String(contentsOfFile: "\(domainsDirectory)/\(name)", encoding: .utf8) { domains += entry + "\n" }
        }
        text.insert(contentsOf: domains, at: end.lowerBound)
        return text
    }

    /// Writes the domain with its run state. `xml` may be nil when only the state changed.
    mutating func record(_ info: DomainInfo, xml: String?) throws {
        guard let xml = xml ?? xmlCache[info.uuid] else { return }
        xmlCache[info.uuid] = xml
        // The test driver's runstate: 1 running, 3 paused, 5 shut off. A transient domain cannot be shut off.
        let runstate: Int
        switch info.state {
        case .paused, .suspendedToMemory: runstate = 3
        case .shutOff, .crashed, .noState: runstate = 5
        default: runstate = 1
        }
        if !info.persistent && runstate == 5 { forget(uuid: info.uuid); return }
        guard let close = xml.range(of: "</domain>", options: .backwards) else { return }
        var entry = xml
        let extra = "<test:runstate>\(runstate)</test:runstate>" + (info.persistent ? "" : "<test:transient/>")
        entry.insert(contentsOf: extra, at: close.lowerBound)
        let path = "\(domainsDirectory)/\(info.uuid).xml"
        try entry.write(toFile: path, atomically: true, encoding: .utf8)
    }

    mutating func forget(uuid: String) {
        xmlCache[uuid] = nil
        try? FileManager.default.removeItem(atPath: "\(domainsDirectory)/\(uuid).xml")
    }
}
