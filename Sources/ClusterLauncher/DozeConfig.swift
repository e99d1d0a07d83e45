import Foundation

/// Where the `doze` CLI and `doze cluster up` keep what a user needs between commands.
public enum DozeConfig {
    /// `$XDG_CONFIG_HOME/doze/token`, else `~/.config/doze/token`: the token the CLI sends when neither `--token`,
    /// `DOZE_TOKEN` nor `DOZE_TOKEN_FILE` names one, and where `doze cluster up` has the admin token made.
    public static var defaultTokenFile: String {
        let environment = ProcessInfo.processInfo.environment
        let base = environment["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (environment["HOME"] ?? NSHomeDirectory()) + "/.config"
        return base + "/doze/token"
    }
}
