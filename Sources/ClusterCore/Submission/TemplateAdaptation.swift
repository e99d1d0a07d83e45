/// Makes a template written for one hypervisor run on the chosen host: only the root `<domain type='…'>` is
/// rewritten (e.g. `kvm` → `test` on a test-driver host, `kvm` → `qemu` on a TCG host); everything else passes
/// through byte for byte. The change is returned so it is recorded in the VM's metadata, never silent.
public enum TemplateAdaptation {
    public struct Change: Sendable, Equatable, Codable {
        public var from: String
        public var to: String
        public init(from: String, to: String) {
            self.from = from
            self.to = to
        }
        public var description: String { "domain type '\(from)' adapted to '\(to)' for this host" }
    }

    /// `supported`: domain types the host runs, best first (e.g. `["kvm", "qemu"]`, or `["test"]`).
    public static func adapt(_ xml: String, supported: [String]) -> (xml: String, change: Change?) {
        guard let preferred = supported.first,
              let open = xml.firstRange(of: "<domain"),
              let close = xml[open.upperBound...].firstIndex(of: ">") else { return (xml, nil) }
        let tag = xml[open.upperBound..<close]
        for quote in ["'", "\""] {
            guard let start = tag.firstRange(of: "type=\(quote)"),
                  let end = tag[start.upperBound...].firstIndex(of: Character(quote)) else { continue }
            let current = String(tag[start.upperBound..<end])
            if supported.contains(current) { return (xml, nil) }
            var adapted = xml
            adapted.replaceSubrange(start.upperBound..<end, with: preferred)
            return (adapted, Change(from: current, to: preferred))
        }
        return (xml, nil)
    }
}
