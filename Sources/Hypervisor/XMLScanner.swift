/// A streaming, non-validating reader for the XML that libvirt takes: elements, attributes, text, comments,
/// CDATA sections and processing instructions. It is strict where a domain needs nothing more (no DOCTYPE, so no
/// entity declarations, external entities or entity expansion; only the five predefined entities and character
/// references), costs constant work per byte, stops at `maxDepth`, and says what is wrong and where.
///
/// Doze reads each submitted document once for what it needs (name, size, host paths) and hands the text itself
/// to libvirt. Foundation's XMLParser shares libxml2's process-wide state with libvirt's own threads; this reader
/// shares nothing.
public struct XMLScanner {
    public enum Event: Equatable {
        case start(name: String, attributes: [String: String])
        case end(name: String)
        case text(String)
    }

    public struct Failure: Error, Equatable, CustomStringConvertible {
        public var reason: String
        public var line: Int
        public var column: Int
        public var description: String { "line \(line), column \(column): \(reason)" }
    }

    private let bytes: [UInt8]
    private let maxDepth: Int
    private var index = 0
    private var open: [(name: String, offset: Int)] = []
    private var sawRoot = false

    public init(_ text: String, maxDepth: Int) {
        self.bytes = Array(text.utf8)
        self.maxDepth = maxDepth
    }

    /// Reads the whole document, handing each event to `handle` in order; throws at the first fault.
    public static func scan(_ text: String, maxDepth: Int, _ handle: (Event) -> Void) throws(Failure) {
        var scanner = XMLScanner(text, maxDepth: maxDepth)
        try scanner.run(handle)
    }

    mutating func run(_ handle: (Event) -> Void) throws(Failure) {
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { index = 3 }   // a UTF-8 byte order mark
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "<") {
                try markup(handle)
            } else {
                try text(handle)
            }
        }
        if let innermost = open.last {
            throw failure("the document ends inside <\(innermost.name)> (opened at \(position(innermost.offset)))", at: bytes.count)
        }
        if !sawRoot { throw failure("the document has no root element", at: bytes.count) }
    }

    // MARK: Markup

    private mutating func markup(_ handle: (Event) -> Void) throws(Failure) {
        let start = index
        if has("<?") {
            guard let close = find("?>", from: index + 2) else { throw failure("an unfinished processing instruction", at: start) }
            try checkEncodingDeclaration(start..<close)
            index = close + 2
        } else if has("<!--") {
            guard let close = find("-->", from: index + 4) else { throw failure("an unfinished comment", at: start) }
            index = close + 3
        } else if has("<![CDATA[") {
            guard !open.isEmpty else { throw failure("a CDATA section outside the root element", at: start) }
            guard let close = find("]]>", from: index + 9) else { throw failure("an unfinished CDATA section", at: start) }
            handle(.text(String(decoding: bytes[(index + 9)..<close], as: UTF8.self)))
            index = close + 3
        } else if has("<!") {
            let word = has("<!DOCTYPE") ? "a DOCTYPE" : "a declaration"
            throw failure("\(word) is not accepted: a domain needs no DTD, entity declarations or external entities", at: start)
        } else if has("</") {
            index += 2
            let name = try readName(what: "an end tag")
            skipSpace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ">") else { throw failure("'>' expected to close </\(name)", at: index) }
            index += 1
            guard let innermost = open.last else { throw failure("</\(name)> closes nothing", at: start) }
            guard innermost.name == name else {
                throw failure("</\(name)> does not match <\(innermost.name)> (opened at \(position(innermost.offset)))", at: start)
            }
            open.removeLast()
            handle(.end(name: name))
        } else {
            try startTag(handle)
        }
    }

    /// `<?xml … encoding="…"?>` may name UTF-8 only. libvirt's parser honours the declaration: under UTF-7,
    /// `+ADw-source file='/etc/shadow'/+AD4-` is an element to libvirt and plain text to this reader, which would
    /// check a different document from the one that runs (and DOCTYPEs could hide the same way).
    private func checkEncodingDeclaration(_ range: Range<Int>) throws(Failure) {
        let text = String(decoding: bytes[(range.lowerBound + 2)..<range.upperBound], as: UTF8.self)
        let target = text.prefix { !" \t\r\n".contains($0) }
        guard target.lowercased() == "xml", let key = text.firstRange(of: "encoding") else { return }
        let rest = text[key.upperBound...].drop { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" || $0 == "=" }
        guard let quote = rest.first, quote == "\"" || quote == "'" else { return }
        let value = rest.dropFirst().prefix { $0 != quote }
        guard value.lowercased() != "utf-8" else { return }
        throw failure("the XML declaration names encoding '\(value)': only UTF-8 is accepted, so that Doze checks the "
                      + "document libvirt reads", at: range.lowerBound)
    }

    private mutating func startTag(_ handle: (Event) -> Void) throws(Failure) {
        let start = index
        index += 1
        if open.isEmpty && sawRoot { throw failure("extra content after the root element", at: start) }
        let name = try readName(what: "an element")
        var attributes: [String: String] = [:]
        while true {
            let hadSpace = skipSpace()
            guard index < bytes.count else { throw failure("the document ends inside the tag <\(name)", at: start) }
            let byte = bytes[index]
            if byte == UInt8(ascii: ">") || has("/>") {
                let empty = byte != UInt8(ascii: ">")
                index += empty ? 2 : 1
                guard open.count < maxDepth else {
                    throw failure("elements nest more than \(maxDepth) levels deep; a domain needs far fewer", at: start)
                }
                sawRoot = true
                handle(.start(name: name, attributes: attributes))
                if empty { handle(.end(name: name)) } else { open.append((name, start)) }
                return
            }
            guard hadSpace else { throw failure("a space is needed before an attribute in <\(name)", at: index) }
            let attributeStart = index
            let attribute = try readName(what: "an attribute")
            skipSpace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "=") else {
                throw failure("attribute '\(attribute)' of <\(name)> has no '=value'", at: attributeStart)
            }
            index += 1
            skipSpace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") || bytes[index] == UInt8(ascii: "'") else {
                throw failure("the value of attribute '\(attribute)' must be quoted", at: index)
            }
            let quote = bytes[index]
            index += 1
            let valueStart = index
            while index < bytes.count, bytes[index] != quote {
                if bytes[index] == UInt8(ascii: "<") { throw failure("'<' inside the value of attribute '\(attribute)'", at: index) }
                index += 1
            }
            guard index < bytes.count else { throw failure("the value of attribute '\(attribute)' is never closed", at: valueStart - 1) }
            let value = try decode(valueStart..<index)
            index += 1
            guard attributes.updateValue(value, forKey: attribute) == nil else {
                throw failure("attribute '\(attribute)' is given twice in <\(name)>", at: attributeStart)
            }
        }
    }

    // MARK: Text

    private mutating func text(_ handle: (Event) -> Void) throws(Failure) {
        let start = index
        while index < bytes.count, bytes[index] != UInt8(ascii: "<") { index += 1 }
        if open.isEmpty {
            if let stray = (start..<index).first(where: { !Self.isSpace(bytes[$0]) }) {
                throw failure(sawRoot ? "extra content after the root element" : "text before the root element", at: stray)
            }
            return
        }
        handle(.text(try decode(start..<index)))
    }

    /// The text of `range` with entity and character references replaced; refuses characters XML does not allow.
    private func decode(_ range: Range<Int>) throws(Failure) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(range.count)
        var at = range.lowerBound
        while at < range.upperBound {
            let byte = bytes[at]
            if byte < 0x20 && byte != 0x09 && byte != 0x0A && byte != 0x0D {
                throw failure("a control character (byte \(byte)) that XML does not allow", at: at)
            }
            guard byte == UInt8(ascii: "&") else {
                out.append(byte)
                at += 1
                continue
            }
            guard let semicolon = (at + 1..<min(range.upperBound, at + 12)).first(where: { bytes[$0] == UInt8(ascii: ";") }) else {
                throw failure("'&' that starts no entity reference (write &amp;)", at: at)
            }
            let reference = String(decoding: bytes[(at + 1)..<semicolon], as: UTF8.self)
            switch reference {
            case "lt": out.append(UInt8(ascii: "<"))
            case "gt": out.append(UInt8(ascii: ">"))
            case "amp": out.append(UInt8(ascii: "&"))
            case "quot": out.append(UInt8(ascii: "\""))
            case "apos": out.append(UInt8(ascii: "'"))
            default:
                guard reference.hasPrefix("#"),
                      let code = reference.hasPrefix("#x") ? UInt32(reference.dropFirst(2), radix: 16) : UInt32(reference.dropFirst(), radix: 10),
                      Self.isXMLCharacter(code), let scalar = Unicode.Scalar(code) else {
                    throw failure("unknown entity &\(reference); (only &lt; &gt; &amp; &quot; &apos; and character references)", at: at)
                }
                out.append(contentsOf: Array(String(Character(scalar)).utf8))
            }
            at = semicolon + 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: Pieces

    private mutating func readName(what: String) throws(Failure) -> String {
        let start = index
        guard index < bytes.count, Self.isNameStart(bytes[index]) else { throw failure("\(what) without a name", at: index) }
        index += 1
        while index < bytes.count, Self.isNameByte(bytes[index]) { index += 1 }
        return String(decoding: bytes[start..<index], as: UTF8.self)
    }

    @discardableResult
    private mutating func skipSpace() -> Bool {
        let start = index
        while index < bytes.count, Self.isSpace(bytes[index]) { index += 1 }
        return index > start
    }

    private func has(_ literal: StaticString) -> Bool {
        let count = literal.utf8CodeUnitCount
        guard index + count <= bytes.count else { return false }
        return literal.withUTF8Buffer { literalBytes in
            (0..<count).allSatisfy { bytes[index + $0] == literalBytes[$0] }
        }
    }

    private func find(_ literal: StaticString, from start: Int) -> Int? {
        literal.withUTF8Buffer { needle -> Int? in
            guard let first = needle.first, needle.count <= bytes.count else { return nil }
            var at = start
            while at + needle.count <= bytes.count {
                if bytes[at] == first, (1..<needle.count).allSatisfy({ bytes[at + $0] == needle[$0] }) { return at }
                at += 1
            }
            return nil
        }
    }

    private static func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D }

    private static func isNameStart(_ byte: UInt8) -> Bool {
        (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ":")
            || byte >= 0x80
    }

    private static func isNameByte(_ byte: UInt8) -> Bool {
        isNameStart(byte) || (byte >= 0x30 && byte <= 0x39) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".")
    }

    private static func isXMLCharacter(_ code: UInt32) -> Bool {
        code == 0x9 || code == 0xA || code == 0xD || (0x20...0xD7FF).contains(code) || (0xE000...0xFFFD).contains(code)
            || (0x10000...0x10FFFF).contains(code)
    }

    private func failure(_ reason: String, at offset: Int) -> Failure {
        let (line, column) = lineAndColumn(offset)
        return Failure(reason: reason, line: line, column: column)
    }

    private func position(_ offset: Int) -> String {
        let (line, column) = lineAndColumn(offset)
        return "line \(line), column \(column)"
    }

    /// Counted only when reporting a fault: once, linear.
    private func lineAndColumn(_ offset: Int) -> (Int, Int) {
        var line = 1, lineStart = 0
        for at in 0..<min(offset, bytes.count) where bytes[at] == 0x0A {
            line += 1
            lineStart = at + 1
        }
        return (line, offset - lineStart + 1)
    }
}
