/// Input checks shared by every API. Each throws a `.badRequest` or `.forbidden` naming the problem.
public enum Validation {
    /// VM names: what libvirt accepts on every driver and what is safe in a file name and a URL.
    public static func vmName(_ name: String) throws(DozeError) {
        try identifier(name, what: "VM name")
    }

    public static func poolName(_ name: String) throws(DozeError) {
        try identifier(name, what: "pool name")
    }

    public static func snapshotName(_ name: String) throws(DozeError) {
        try identifier(name, what: "snapshot name")
    }

    /// The largest network demand accepted, in bytes per second: 2^53, the largest integer a JSON double holds
    /// exactly (far above any link); anything larger would come back as 9.2e18.
    public static let maxNetworkBytes: Double = 9_007_199_254_740_992

    /// A network capacity demand (`rxBytes`, `txBytes`): finite, from 0 to `maxNetworkBytes`.
    public static func networkDemand(_ value: Double, what: String) throws(DozeError) {
        guard value.isFinite, value >= 0, value <= maxNetworkBytes else {
            throw DozeError(.badRequest, "\(what) must be a number of bytes from 0 to 2^53 (\(Int64(maxNetworkBytes))), got \(value)")
        }
    }

    static func identifier(_ name: String, what: String) throws(DozeError) {
        guard !name.isEmpty else { throw DozeError(.badRequest, "\(what) is empty") }
        guard name.utf8.count <= 64 else { throw DozeError(.badRequest, "\(what) is longer than 64 bytes") }
        let allowed: (Unicode.Scalar) -> Bool = { scalar in
            (scalar >= "a" && scalar <= "z") || (scalar >= "A" && scalar <= "Z") || (scalar >= "0" && scalar <= "9") || scalar == "-" || scalar == "_" || scalar == "."
        }
        guard name.unicodeScalars.allSatisfy(allowed), let first = name.unicodeScalars.first,
              first != ".", first != "-"
        else {
            throw DozeError(.badRequest,
                "\(what) '\(name)' is invalid: use letters, digits, '.', '_' and '-', not starting with '.' or '-'")
        }
    }

    /// A plain file name inside a directory: no separators, no `..`.
    public static func fileName(_ name: String) throws(DozeError) {
        guard !name.isEmpty, !name.contains("/"), name != ".", name != "..", !name.contains("\0") else {
            throw DozeError(.forbidden, "'\(name)' is not a plain file name inside the allowed directory")
        }
    }
}
