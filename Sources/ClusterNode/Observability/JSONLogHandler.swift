import ClusterTransport
import Foundation
import Logging
import Synchronization

/// How a process writes its log: `text` (swift-log's stream handler) or `json` (one object per line).
public enum LogFormat: String, Sendable, CaseIterable {
    case text, json

    /// Bootstraps swift-log for this process (once: the `doze` command calls it). Either format carries the
    /// id of the request being handled (`doze/request`) through a metadata provider reading `RequestID.current`,
    /// so loggers made at start-up, long before the request, still name it.
    public func bootstrap(level: Logger.Level) {
        let provider = Logger.MetadataProvider {
            guard let id = RequestID.current else { return [:] }
            return ["doze/request": "\(id)"]
        }
        switch self {
        case .text:
            LoggingSystem.bootstrap({ label, provider in
                var handler = StreamLogHandler.standardError(label: label, metadataProvider: provider)
                handler.logLevel = level
                return handler
            }, metadataProvider: provider)
        case .json:
            LoggingSystem.bootstrap({ label, provider in
                var handler = JSONLogHandler(label: label, metadataProvider: provider, write: JSONLogHandler.standardError)
                handler.logLevel = level
                return handler
            }, metadataProvider: provider)
        }
    }
}

/// One JSON object per line: `time` (UTC, milliseconds), `level`, `label`, `message`, `metadata`, `source`.
/// Keys that name credentials have their values replaced, and a `token=` in any text is cut, so an
/// `Authorization` header or a token query parameter that reaches a log line never shows.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let label: String
    let write: @Sendable (String) -> Void

    public init(label: String, metadataProvider: Logger.MetadataProvider? = nil, write: @escaping @Sendable (String) -> Void) {
        self.label = label
        self.metadataProvider = metadataProvider
        self.write = write
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        var line = "{\"time\":"
        Self.appendString(Self.timestamp(), to: &line)
        line += ",\"level\":"
        Self.appendString(event.level.rawValue, to: &line)
        line += ",\"label\":"
        Self.appendString(label, to: &line)
        line += ",\"message\":"
        Self.appendString(Self.redacted("\(event.message)"), to: &line)
        line += ",\"metadata\":"
        Self.append(.dictionary(merged), to: &line)
        line += ",\"source\":"
        Self.appendString(event.source, to: &line)
        line += "}\n"
        write(line)
    }

    /// Whole lines under a lock, so lines of concurrent tasks never interleave.
    public static let standardError: @Sendable (String) -> Void = { line in
        stderrLock.withLock { _ in
            // One write(2) per line on fd 2: unbuffered, so nothing is lost when the process is killed.
            var bytes = Array(line.utf8)
            var offset = 0
            while offset < bytes.count {
                let wrote = bytes.withUnsafeMutableBytes { Foundation.write(2, $0.baseAddress! + offset, $0.count - offset) }
                if wrote <= 0 { break }
                offset += wrote
            }
        }
    }
    private static let stderrLock = Mutex(())

    // MARK: - Encoding

    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let millis = Int(now.tv_nsec / 1_000_000)
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        let ms = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)).\(ms)Z"
    }

    static let credentialKeys = ["authorization", "token", "secret", "password"]

    static func append(_ value: Logger.MetadataValue, key: String? = nil, to line: inout String) {
        if let key, credentialKeys.contains(where: { key.lowercased().contains($0) }) {
            appendString("[redacted]", to: &line)
            return
        }
        switch value {
        case .string(let text): appendString(redacted(text), to: &line)
        case .stringConvertible(let convertible): appendString(redacted(convertible.description), to: &line)
        case .array(let values):
            line += "["
            for (index, element) in values.enumerated() {
                if index > 0 { line += "," }
                append(element, to: &line)
            }
            line += "]"
        case .dictionary(let entries):
            line += "{"
            for (index, entry) in entries.sorted(by: { $0.key < $1.key }).enumerated() {
                if index > 0 { line += "," }
                appendString(entry.key, to: &line)
                line += ":"
                append(entry.value, key: entry.key, to: &line)
            }
            line += "}"
        }
    }

    /// `…token=SECRET&…` → `…token=[redacted]&…`.
    static func redacted(_ text: String) -> String {
        guard text.contains("token=") else { return text }
        var out = ""
        var rest = Substring(text)
        while let range = rest.range(of: "token=") {
            out += rest[..<range.upperBound]
            out += "[redacted]"
            rest = rest[range.upperBound...]
            let end = rest.firstIndex { " &\"',;\n".contains($0) } ?? rest.endIndex
            rest = rest[end...]
        }
        return out + rest
    }

    static func appendString(_ text: String, to line: inout String) {
        line += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": line += "\\\""
            case "\\": line += "\\\\"
            case "\n": line += "\\n"
            case "\r": line += "\\r"
            case "\t": line += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                line += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: line.unicodeScalars.append(scalar)
            }
        }
        line += "\""
    }
}
