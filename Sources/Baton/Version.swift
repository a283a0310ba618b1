/// Baton's release version: the one source of truth. `baton --version` prints it and
/// `Packaging/build.sh` reads it from this file for the package and tarball names.
public enum BatonVersion {
    /// "0.1.0": what `baton --version` prints and the packages are named after.
    public static let string = "0.1.0"
}

extension Baton {
    /// This release of Baton (the library every master and worker links): `BatonVersion.string`.
    public static var version: String { BatonVersion.string }
}
