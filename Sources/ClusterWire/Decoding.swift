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
    public static func encoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }
}
