import Foundation

extension KeyedDecodingContainer {
    /// Snooze's Jackson beans may omit any property; a missing or null one takes its default.
    func value<T: Decodable>(_ key: Key, default value: @autoclosure () -> T) throws -> T {
        try decodeIfPresent(T.self, forKey: key) ?? value()
    }
}

/// The JSON coders every Doze endpoint uses.
public enum WireCoding {
    public static func decoder() -> JSONDecoder { JSONDecoder() }

    /// Decodes `T` from JSON read off the network: `StrictJSON` first (grammar, depth, no trailing commas, a
    /// position in the error), then the decoder. A grammar failure is a `DecodingError.dataCorrupted` with an
    /// empty coding path, like the decoder's own.
    public static func decode<T: Decodable>(_ type: T.Type, from bytes: some Collection<UInt8>) throws -> T {
        do { try StrictJSON.check(bytes) } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: error.description))
        }
        return try decoder().decode(T.self, from: Data(bytes))
    }
    public static func encoder() -> JSONEncoder {
        let jsonEncoder = JSONEncoder()
        jsonEncoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return jsonEncoder
    }
    /// Between nodes nobody reads the bytes: skip sorting keys (a 1,000-VM submission crosses three hops).
    public static func peerEncoder() -> JSONEncoder {
        let jsonEncoder = JSONEncoder()
        jsonEncoder.outputFormatting = [.withoutEscapingSlashes]
        return jsonEncoder
    }
}
