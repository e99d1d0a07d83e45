import ClusterCore
import ClusterWire
import Foundation
import HTTPTypes
import Hummingbird

/// Body and response helpers shared by every router.
public enum HTTPBody {
    /// Reads the whole body, refusing more than `limit` bytes with a 413.
    public static func collect(_ request: Request, limit: Int) async throws -> ByteBuffer {
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
            throw APIError(DozeError(.payloadTooLarge, "request body of \(length) bytes exceeds the \(limit)-byte limit"))
        }
        var request = request
        do {
            return try await request.collectBody(upTo: limit)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw APIError(DozeError(.payloadTooLarge, "request body exceeds the \(limit)-byte limit"))
        }
    }

    public static func string(_ request: Request, limit: Int) async throws -> String {
        let buffer = try await collect(request, limit: limit)
        return String(buffer: buffer)
    }

    /// Decodes JSON whatever the Content-Type says (Snooze clients send none, or a form type).
    public static func json<T: Decodable>(_ request: Request, as type: T.Type, limit: Int) async throws -> T {
        try decode(try await collect(request, limit: limit), as: type)
    }

    /// An optional JSON body: nil when the body is empty.
    public static func optionalJSON<T: Decodable>(_ request: Request, as type: T.Type, limit: Int) async throws -> T? {
        let buffer = try await collect(request, limit: limit)
        guard buffer.readableBytesView.contains(where: { $0 != 0x20 && $0 != 0x0a && $0 != 0x0d && $0 != 0x09 }) else { return nil }
        return try decode(buffer, as: type)
    }

    /// Decodes a body already collected, with the same errors as `json(_:as:limit:)`.
    public static func decode<T: Decodable>(_ buffer: ByteBuffer, as type: T.Type) throws -> T {
        guard buffer.readableBytes > 0 else {
            throw APIError(DozeError(.badRequest, "the request body is empty; a JSON \(T.self) is expected"))
        }
        do {
            return try WireCoding.decode(T.self, from: buffer.readableBytesView)
        } catch let error as DecodingError {
            throw APIError(DozeError(.badRequest, "malformed JSON for \(T.self): \(describe(error, in: buffer.readableBytesView))"))
        } catch {
            throw APIError(DozeError(.badRequest, "malformed JSON: \(error)"))
        }
    }

    /// A Snooze string argument: the raw, unquoted text (`vm1`), or a JSON string (`"vm1"`).
    public static func rawString(_ request: Request, what: String, limit: Int) async throws -> String {
        var text = try await string(request, limit: limit).trimmingCharacters(in: .whitespacesAndNewlines)
        if text.hasPrefix("\""), let decoded = try? JSONDecoder().decode(String.self, from: Data(text.utf8)) {
            text = decoded
        }
        guard !text.isEmpty else { throw APIError(DozeError(.badRequest, "the request body must carry the \(what)")) }
        return text
    }

    /// `describe(_:)`, and when the decoder calls a grammatically valid document "not valid JSON" (what
    /// Foundation says of 2.5, 1e308 or a 26-digit number where an integer is expected), the numbers to blame.
    public static func describe(_ error: DecodingError, in document: some Collection<UInt8>) -> String {
        if case .dataCorrupted(let context) = error, context.codingPath.isEmpty, (try? StrictJSON.check(document)) != nil {
            let suspects = StrictJSON.nonIntegerNumbers(document)
            if !suspects.isEmpty {
                let named = suspects.prefix(3).map { "'\($0.path)' is \($0.text)" }.joined(separator: ", ")
                return "a number that must be an integer is not one (or does not fit in 64 bits): \(named)"
            }
        }
        return describe(error)
    }

    public static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let dotted = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
            return dotted.isEmpty ? "" : " at '\(dotted)'"
        }
        switch error {
        case .dataCorrupted(let context) where context.codingPath.isEmpty: return "not valid JSON (\(context.debugDescription))"
        case .dataCorrupted(let context):
            // Valid JSON whose value does not fit: Foundation says "Parsed JSON number <2.5> does not fit in Int."
            let text = context.debugDescription
            if let fit = text.range(of: "does not fit in ") {
                let type = text[fit.upperBound...].trimmingCharacters(in: .punctuationCharacters)
                let number = text.firstRange(of: "<").flatMap { open in text[open.upperBound...].firstRange(of: ">").map { text[open.upperBound..<$0.lowerBound] } }
                return "\(expectation(type))\(path(context))\(number.map { ", got \($0)" } ?? "")"
            }
            return "\(text)\(path(context))"
        case .keyNotFound(let key, let context): return "missing '\(key.stringValue)'\(path(context))"
        case .typeMismatch(let type, let context): return "\(expectation("\(type)"))\(path(context))"
        case .valueNotFound(let type, let context): return "null where \(type) is expected\(path(context))"
        @unknown default: return "\(error)"
        }
    }

    /// What a value of `type` must be, in a client's words.
    static func expectation(_ type: String) -> String {
        switch type {
        case "Int", "Int8", "Int16", "Int32", "Int64", "UInt", "UInt8", "UInt16", "UInt32", "UInt64":
            return "must be an integer that fits in \(type)"
        case "Double", "Float": return "must be a number"
        case "String": return "must be a string"
        case "Bool": return "must be true or false"
        default:
            if type.hasPrefix("Array") { return "must be an array" }
            if type.hasPrefix("Dictionary") { return "must be an object" }
            return "expected \(type)"
        }
    }
}

public enum HTTPReply {
    public static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
        let data = try WireCoding.encoder().encode(value)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// JSON that is already encoded (a peer's answer passed through).
    public static func rawJSON(_ body: ByteBuffer) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: body))
    }

    public static func bool(_ value: Bool) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"],
                 body: .init(byteBuffer: ByteBuffer(string: value ? "true" : "false")))
    }

    public static func text(_ value: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: value)))
    }
}

/// Runs a backend call, turning its `DozeError` into the API's JSON error.
@inline(__always)
public func api<T>(_ body: () async throws(DozeError) -> T) async throws -> T {
    do { return try await body() } catch { throw APIError(error) }
}

extension Request {
    /// The Snooze operation: the bare query-string name (`/localcontroller?startVirtualMachines`).
    public var snoozeOperation: String? {
        guard let query = uri.query, !query.isEmpty else { return nil }
        let first = query.split(separator: "&", maxSplits: 1).first.map(String.init) ?? query
        return first.split(separator: "=", maxSplits: 1).first.map(String.init)
    }

    /// A bare flag or `name=…` anywhere in the query (`?startVirtualMachines&partial`).
    public func hasQueryFlag(_ name: String) -> Bool {
        guard let query = uri.query else { return false }
        return query.split(separator: "&").contains { $0 == name || $0.hasPrefix(name + "=") }
    }

    public func requiredQuery(_ name: String) throws -> String {
        guard let value = optionalQuery(name) else {
            throw APIError(DozeError(.badRequest, "missing query parameter '\(name)'"))
        }
        return value
    }

    /// A query parameter decoded once, form-style (`+` is a space, `%XX` a byte), from the raw query string.
    public func optionalQuery(_ name: String) -> String? {
        guard let query = uri.query else { return nil }
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, parts[0] == name else { continue }
            let raw = parts[1].replacingOccurrences(of: "+", with: " ")
            let value = raw.removingPercentEncoding ?? raw
            return value.isEmpty ? nil : value
        }
        return nil
    }
}
