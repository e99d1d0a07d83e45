/// What a libvirt connection URI says about the host behind it.
public enum HypervisorURI {
    /// libvirt's test driver (`test:///default`, `test:///PATH.xml`): a fake host that runs `type='test'` domains,
    /// measures no real load and cannot migrate live.
    public static func isTestDriver(_ uri: String) -> Bool { uri.hasPrefix("test:") }
}
