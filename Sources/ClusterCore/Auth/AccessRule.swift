/// What a request needs, decided from its method, path and (Snooze) operation alone, before any handler runs:
/// the middleware refuses what the principal may not reach, and tenant-scoped handlers then show only the
/// tenant's objects. Unknown paths need an admin, so a new route is closed until it is classified here.
public enum AccessRule: Sendable, Equatable {
    /// `/health`, `/metrics`, the API document: no credentials.
    case anyone
    /// Any authenticated principal; the handler limits a tenant to its own objects.
    case tenantScoped
    /// Admins and nodes: the infrastructure (hosts, migrations, the hierarchy, tenants).
    case admin
    /// Other nodes (and admins, who may do anything): the hierarchy's own calls (joins, assignments, a manager
    /// starting VMs on a controller).
    case node

    /// The Snooze entry points, whose access `snooze_compat` decides.
    public static func isSnooze(path: String) -> Bool {
        path == "/bootstrap" || path == "/groupmanager" || path == "/localcontroller"
    }

    static let nodeOperations: Set<String> = ["joinGroupLeader", "assignLocalController", "joinGroupManager", "startVirtualMachines",
                                              "virtualMachineMoved"]
    static let tenantOperations: Set<String> = ["startVirtualCluster", "getVirtualClusterResponse", "discoverVirtualMachine",
                                                "getVirtualMachineDescriptions", "getVirtualMachineMetaData", "resizeVirtualMachine",
                                                "searchVirtualMachine", "getGroupLeaderDescription",
                                                "suspendVirtualMachine", "resumeVirtualMachine", "shutdownVirtualMachine",
                                                "rebootVirtualMachine", "destroyVirtualMachine"]

    /// `onController`: the request reached a local controller, whose whole API is the cluster's to call.
    public static func classify(method: String, path: String, operation: String?, onController: Bool) -> AccessRule {
        if path == "/health" || path == "/metrics" || path == "/v1/openapi.json" || path == "/ui" || path.hasPrefix("/ui/") { return .anyone }
        if onController { return path == "/localcontroller" || path.hasPrefix("/v1/host/") ? .node : .admin }
        if path == "/groupmanager" || path == "/bootstrap" {
            guard let operation else { return .admin }
            if nodeOperations.contains(operation) { return .node }
            return tenantOperations.contains(operation) ? .tenantScoped : .admin
        }
        // Declared load is a test-driver tool of the operator's.
        if path.hasPrefix("/v1/vms/"), path.hasSuffix("/load") { return .admin }
        for prefix in ["/v1/vms", "/v1/virtual-clusters", "/v1/tokens", "/v1/events", "/v1/networks", "/v1/floating-ips", "/v1/kvm-apps"]
        where path == prefix || path.hasPrefix(prefix + "/") {
            return .tenantScoped
        }
        if path.hasPrefix("/VirtualMachineNetwork/") { return .tenantScoped }
        if path == "/v1/whoami" { return .tenantScoped }
        // A tenant reads its own tenant document (the handler refuses the others).
        if method == "GET", path.hasPrefix("/v1/tenants/") { return .tenantScoped }
        return .admin
    }

    public func allows(_ principal: Principal?) -> Bool {
        switch self {
        case .anyone: return true
        case .tenantScoped: return principal != nil
        case .admin, .node: return principal == .admin || principal == .node
        }
    }
}
