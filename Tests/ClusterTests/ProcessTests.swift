import Testing

/// Every suite that runs whole clusters of real `doze` processes, one at a time: on a 2-core machine several
/// clusters at once starve each other's heartbeats and every bounded wait becomes a coin toss.
@Suite(.serialized) enum ProcessTests {}
