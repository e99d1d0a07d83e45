/// Decides whether a path lies inside one of the allowed directories, on the lexical form of the path.
/// The shell resolves symlinks before asking (that is IO); this type only does the arithmetic.
public struct PathPolicy: Sendable, Equatable {
    public var allowedDirectories: [String]

    public init(allowedDirectories: [String]) {
        self.allowedDirectories = allowedDirectories.map(PathPolicy.normalize)
    }

    /// Collapses `.`, `..` and repeated slashes. Relative paths are not normalised: callers reject them.
    public static func normalize(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch part {
            case ".": continue
            case "..": if !parts.isEmpty { parts.removeLast() }
            default: parts.append(part)
            }
        }
        return "/" + parts.joined(separator: "/")
    }

    /// Throws `.forbidden` unless `path` is absolute and, once normalised, inside an allowed directory.
    public func check(_ path: String, what: String) throws(DozeError) {
        guard path.hasPrefix("/") else { throw DozeError(.forbidden, "\(what) '\(path)' is not an absolute path") }
        let normalized = PathPolicy.normalize(path)
        for dir in allowedDirectories {
            if normalized == dir || normalized.hasPrefix(dir == "/" ? "/" : dir + "/") { return }
        }
        let list = allowedDirectories.isEmpty ? "none configured" : allowedDirectories.joined(separator: ", ")
        throw DozeError(.forbidden, "\(what) '\(path)' is outside the allowed directories (\(list))")
    }
}
