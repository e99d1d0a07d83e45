/// Makes a request target without its leading slash acceptable: some Snooze clients send
/// `POST groupmanager?startVirtualCluster HTTP/1.1`, which NIO's strict HTTP/1 parser (llhttp) rejects before any
/// routing. Sits in front of the parser on the raw bytes and inserts the `/`; everything else passes unchanged.
///
/// It follows message boundaries over a keep-alive connection (request line, headers, `Content-Length` body) so
/// every request on the connection is fixed. A chunked body, or anything it cannot follow, switches it to plain
/// pass-through for the rest of the connection: the parser then judges those bytes as usual. Pure; no NIO.
public struct RequestLineRewriter: Sendable {
    enum State: Sendable, Equatable {
        case requestLine
        case headers
        case body(remaining: Int)
        case passThrough
    }

    static let maxHead = 64 * 1024
    private(set) var state: State = .requestLine
    private var pending: [UInt8] = []
    public private(set) var rewritten = 0

    public init() {}

    /// Consumes bytes as they arrive; returns the bytes to hand to the HTTP parser (possibly none yet).
    public mutating func feed(_ bytes: some Collection<UInt8>) -> [UInt8] {
        var output: [UInt8] = []
        var input = ArraySlice(bytes)
        while !input.isEmpty {
            switch state {
            case .passThrough:
                output += pending + input
                pending = []
                return output
            case .body(let remaining):
                let take = min(remaining, input.count)
                output += input.prefix(take)
                input = input.dropFirst(take)
                state = remaining - take == 0 ? .requestLine : .body(remaining: remaining - take)
            case .requestLine:
                guard let end = Self.lineEnd(in: &pending, adding: &input) else {
                    if pending.count > Self.maxHead { state = .passThrough }
                    continue
                }
                let line = Array(pending[..<end])
                pending.removeFirst(end)
                if line == [0x0D, 0x0A] || line == [0x0A] {   // a stray CRLF between requests: pass it on
                    output += line
                    continue
                }
                output += fix(line)
                state = .headers
            case .headers:
                guard let end = Self.headEnd(in: &pending, adding: &input) else {
                    if pending.count > Self.maxHead { state = .passThrough }
                    continue
                }
                let head = Array(pending[..<end])
                pending.removeFirst(end)
                output += head
                state = Self.bodyState(head)
                if case .body(0) = state { state = .requestLine }
                // Bytes after the head that were already buffered belong to the body or the next request.
                if !pending.isEmpty {
                    let leftover = pending
                    pending = []
                    input = ArraySlice(leftover) + input
                }
            }
        }
        return output
    }

    /// Inserts `/` into `METHOD target VERSION` when the target is neither origin-form, `*`, nor absolute-form.
    mutating func fix(_ line: [UInt8]) -> [UInt8] {
        guard let firstSpace = line.firstIndex(of: 0x20), firstSpace + 1 < line.count else { return line }
        let target = line[(firstSpace + 1)...]
        guard let first = target.first, first != UInt8(ascii: "/"), first != UInt8(ascii: "*"), first != 0x20 else { return line }
        let text = String(decoding: target.prefix(16), as: UTF8.self).lowercased()
        if text.hasPrefix("http://") || text.hasPrefix("https://") { return line }
        rewritten += 1
        return Array(line[...firstSpace]) + [UInt8(ascii: "/")] + Array(target)
    }

    /// Moves input into `pending` up to and including the first CRLF; returns the length of the line with its CRLF.
    static func lineEnd(in pending: inout [UInt8], adding input: inout ArraySlice<UInt8>) -> Int? {
        while let byte = input.first {
            pending.append(byte)
            input = input.dropFirst()
            if byte == 0x0A { return pending.count }
            if pending.count > maxHead { return nil }
        }
        return nil
    }

    /// Moves input into `pending` up to the empty line ending the headers; returns the head's length.
    static func headEnd(in pending: inout [UInt8], adding input: inout ArraySlice<UInt8>) -> Int? {
        while let byte = input.first {
            pending.append(byte)
            input = input.dropFirst()
            if byte == 0x0A {
                let length = pending.count
                if length >= 2 && pending[length - 2] == 0x0A { return length }                                  // bare LF LF
                if length >= 4 && pending[length - 2] == 0x0D && pending[length - 3] == 0x0A { return length }   // CRLF CRLF
                if length == 2 && pending[0] == 0x0D { return length }                                           // no headers at all
            }
            if pending.count > maxHead { return nil }
        }
        return nil
    }

    static func bodyState(_ head: [UInt8]) -> State {
        var length = 0
        // Lines as bytes: in a Swift String, CR LF is one Character and would not split on "\n".
        for rawLine in head.split(separator: 0x0A) {
            let line = String(decoding: rawLine.filter { $0 != 0x0D }, as: UTF8.self).lowercased()
            if line.hasPrefix("transfer-encoding:") { return .passThrough }
            if line.hasPrefix("content-length:") {
                let words = line.dropFirst("content-length:".count).split(whereSeparator: { $0 == " " || $0 == "\t" })
                guard words.count == 1, let value = Int(words[0]), value >= 0 else { return .passThrough }
                length = value
            }
        }
        return .body(remaining: length)
    }
}
