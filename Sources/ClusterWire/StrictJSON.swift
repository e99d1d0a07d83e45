/// A strict RFC 8259 check run on every JSON document read from the network, before `JSONDecoder` sees it.
///
/// Foundation's decoder accepts a trailing comma and has no nesting limit of ours; this pass refuses both, in one
/// linear walk with a bounded depth, and says where the text goes wrong (`line 1, column 17: …`) so a client can
/// fix its request. It checks the grammar only; the decoder still decides whether the values fit the type.
public enum StrictJSON {
    /// Deeper than any document Doze defines (Snooze's deepest is under 8 levels).
    public static let maxDepth = 64

    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var line: Int
        public var column: Int
        public var reason: String
        public var description: String { "line \(line), column \(column): \(reason)" }
    }

    public static func check(_ bytes: some Sequence<UInt8>, maxDepth: Int = maxDepth) throws(Failure) {
        var reader = Reader(bytes: Array(bytes), maxDepth: maxDepth)
        try reader.document()
    }

    /// The numbers of a valid document that no integer type holds (a fraction, an exponent, or beyond Int64),
    /// with where they are (`quota.cpu_max`). Foundation's decoder reports "not valid JSON", with no place, for
    /// such a number where an integer is expected; this names the candidates instead.
    public static func nonIntegerNumbers(_ bytes: some Sequence<UInt8>) -> [(path: String, text: String)] {
        var reader = Reader(bytes: Array(bytes), maxDepth: maxDepth)
        reader.collecting = true
        try? reader.document()
        return reader.nonIntegers
    }

    private struct Reader {
        let bytes: [UInt8]
        let maxDepth: Int
        var index = 0
        var depth = 0
        var collecting = false
        var path: [String] = []
        var nonIntegers: [(path: String, text: String)] = []

        init(bytes: [UInt8], maxDepth: Int) {
            self.bytes = bytes
            self.maxDepth = maxDepth
        }

        mutating func document() throws(Failure) {
            skipSpace()
            try value()
            skipSpace()
            if index < bytes.count { throw fail("unexpected \(shown(bytes[index])) after the JSON value") }
        }

        mutating func value() throws(Failure) {
            guard index < bytes.count else { throw fail("the document ends where a value is expected") }
            switch bytes[index] {
            case UInt8(ascii: "{"): try container(close: UInt8(ascii: "}"), keyed: true)
            case UInt8(ascii: "["): try container(close: UInt8(ascii: "]"), keyed: false)
            case UInt8(ascii: "\""): try string()
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try number()
            case UInt8(ascii: "t"): try literal("true")
            case UInt8(ascii: "f"): try literal("false")
            case UInt8(ascii: "n"): try literal("null")
            case let byte: throw fail("unexpected \(shown(byte)) where a value is expected")
            }
        }

        mutating func container(close: UInt8, keyed: Bool) throws(Failure) {
            depth += 1
            guard depth <= maxDepth else { throw fail("nested deeper than \(maxDepth) levels") }
            index += 1
            skipSpace()
            if peek == close {
                index += 1
                depth -= 1
                return
            }
            var element = 0
            if collecting { path.append("") }
            defer { if collecting { path.removeLast() } }
            while true {
                if keyed {
                    guard peek == UInt8(ascii: "\"") else {
                        throw fail(peek == close ? "a trailing comma before '}'" : "an object key must be a string")
                    }
                    let keyStart = index + 1
                    try string()
                    if collecting { path[path.count - 1] = String(decoding: bytes[keyStart..<index - 1], as: UTF8.self) }
                    skipSpace()
                    guard peek == UInt8(ascii: ":") else { throw fail("expected ':' after an object key") }
                    index += 1
                    skipSpace()
                } else if peek == close {
                    throw fail("a trailing comma before ']'")
                } else if collecting {
                    path[path.count - 1] = "[\(element)]"
                }
                element += 1
                try value()
                skipSpace()
                guard let next = peek else { throw fail("the document ends inside \(keyed ? "an object" : "an array")") }
                index += 1
                if next == close { break }
                guard next == UInt8(ascii: ",") else {
                    index -= 1
                    throw fail("expected ',' or '\(Character(Unicode.Scalar(close)))', found \(shown(next))")
                }
                skipSpace()
            }
            depth -= 1
        }

        mutating func string() throws(Failure) {
            index += 1   // the opening quote
            while index < bytes.count {
                let byte = bytes[index]
                switch byte {
                case UInt8(ascii: "\""):
                    index += 1
                    return
                case UInt8(ascii: "\\"):
                    index += 1
                    guard let escaped = peek else { break }
                    switch escaped {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                         UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                        index += 1
                    case UInt8(ascii: "u"):
                        index += 1
                        for _ in 0..<4 {
                            guard let hexDigit = peek, Self.isHex(hexDigit) else { throw fail("\\u must be followed by four hex digits") }
                            index += 1
                        }
                    default: throw fail("unknown escape '\\\(Character(Unicode.Scalar(escaped)))' in a string")
                    }
                case 0..<0x20: throw fail("a control character (0x\(String(byte, radix: 16))) inside a string must be escaped")
                default: index += 1
                }
            }
            throw fail("the document ends inside a string")
        }

        mutating func number() throws(Failure) {
            let start = index
            defer {
                if collecting, index > start {
                    let text = String(decoding: bytes[start..<index], as: UTF8.self)
                    if Int64(text) == nil {
                        let where_ = path.reduce("") { $1.hasPrefix("[") || $0.isEmpty ? $0 + $1 : $0 + "." + $1 }
                        nonIntegers.append((where_, text))
                    }
                }
            }
            if peek == UInt8(ascii: "-") { index += 1 }
            guard let first = peek, Self.isDigit(first) else { throw fail("a number needs a digit after '-'") }
            index += 1
            if first == UInt8(ascii: "0"), let next = peek, Self.isDigit(next) { throw fail("a number must not start with 0") }
            digits()
            if peek == UInt8(ascii: ".") {
                index += 1
                guard let digit = peek, Self.isDigit(digit) else { throw fail("a number needs digits after '.'") }
                digits()
            }
            if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
                index += 1
                if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { index += 1 }
                guard let digit = peek, Self.isDigit(digit) else { throw fail("a number needs digits in its exponent") }
                digits()
            }
        }

        mutating func digits() {
            while let digit = peek, Self.isDigit(digit) { index += 1 }
        }

        mutating func literal(_ word: StaticString) throws(Failure) {
            let expected = word.withUTF8Buffer { Array($0) }
            guard bytes.count - index >= expected.count, bytes[index..<index + expected.count].elementsEqual(expected) else {
                throw fail("unexpected \(shown(bytes[index])) where a value is expected")
            }
            index += expected.count
        }

        mutating func skipSpace() {
            while let byte = peek, byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 { index += 1 }
        }

        var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

        static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
        static func isHex(_ byte: UInt8) -> Bool {
            isDigit(byte) || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "f")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "F"))
        }

        func shown(_ byte: UInt8) -> String {
            (0x21..<0x7F).contains(byte) ? "'\(Character(Unicode.Scalar(byte)))'" : "byte 0x\(String(byte, radix: 16))"
        }

        /// The failure at the current position; lines and columns count from 1, columns in bytes.
        func fail(_ reason: String) -> Failure {
            var line = 1
            var lineStart = 0
            for i in 0..<min(index, bytes.count) where bytes[i] == 0x0A {
                line += 1
                lineStart = i + 1
            }
            return Failure(line: line, column: index - lineStart + 1, reason: reason)
        }
    }
}
