/// Snooze's VM statuses (snooze.md §6), used on every wire that speaks Snooze.
public enum VMStatus: String, Sendable, Codable, CaseIterable {
    case unknown = "UNKNOWN"
    case running = "RUNNING"
    case paused = "PAUSED"
    case shutdownPending = "SHUTDOWN_PENDING"
    case offline = "OFFLINE"
    case error = "ERROR"
}

/// Snooze's per-VM error codes; `UNKNOWN` means "no error", as in Snooze.
public enum VMErrorCode: String, Sendable, Codable, CaseIterable {
    case none = "UNKNOWN"
    case notEnoughIPAddresses = "NOT_ENOUGH_IP_ADDRESSES"
    case notEnoughLocalControllerCapacity = "NOT_ENOUGH_LOCAL_CONTROLLER_CAPACITY"
    case unableToStartOnLocalController = "UNABLE_TO_START_ON_LOCAL_CONTROLLER"
    case failedToUpdateRepository = "FAILED_TO_UPDATE_REPOSITORY"
    case alreadyRunning = "ALREADY_RUNNING"
    case unableToStartOnGroupManager = "UNABLE_TO_START_ON_GROUP_MANAGER"
    case unableToCollectGroupManagerResponse = "UNABLE_TO_COLLECT_GROUP_MANAGER_RESPONSE"
    case notEnoughGroupManagerCapacity = "NOT_ENOUGH_GROUP_MANAGER_CAPACITY"
    case localControllerWakeupFailed = "LOCAL_CONTROLLER_WAKEUP_FAILED"
    case failedToStartMonitoring = "FAILED_TO_START_MONITORING"
    case failedToStartOnHypervisor = "FAILED_TO_START_ON_HYPERVISOR"
    case invalidSubmissionResponse = "INVALID_SUBMISSION_RESPONSE"
    case invalidHostID = "INVALID_HOST_ID"
    // Doze additions: reasons Snooze had no code for.
    case quotaExceeded = "QUOTA_EXCEEDED"
    case invalidTemplate = "INVALID_TEMPLATE"
    case imageNotFound = "IMAGE_NOT_FOUND"
}

/// The operations a user can ask of one VM, with the state each needs.
///
/// Legal requests (Snooze's preconditions, snooze.md §5.3, made explicit):
/// suspend, reboot, resize, shutdown: RUNNING (shutdown also while SHUTDOWN_PENDING, to repeat the ACPI press);
/// resume: PAUSED; start: OFFLINE; destroy, snapshot: any known state.
public enum VMOperation: String, Sendable, CaseIterable {
    case start, suspend, resume, shutdown, reboot, destroy, resize, snapshot, revert

    public func check(current status: VMStatus, vm: String) throws(DozeError) {
        let allowed: Bool
        switch self {
        case .suspend, .reboot, .resize: allowed = status == .running
        case .shutdown: allowed = status == .running || status == .shutdownPending
        case .resume: allowed = status == .paused
        case .start: allowed = status == .offline
        case .destroy, .snapshot, .revert: allowed = true
        }
        guard allowed else {
            throw DozeError(.conflict, "cannot \(rawValue) VM '\(vm)': it is \(status.rawValue)\(hint(status))")
        }
    }

    private func hint(_ status: VMStatus) -> String {
        switch (self, status) {
        case (.resume, .running): return " (already running)"
        case (.suspend, .paused): return " (already paused)"
        case (.start, .running), (.start, .paused): return " (already started)"
        default: return ""
        }
    }
}
