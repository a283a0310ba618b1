extension Baton {
    /// This release of Baton (the library every master and worker links).
    public static let version = "0.1.0"
}
