/// A file path split into its folder and its last name, as `dirname(1)` and `basename(1)` do for
/// the paths Baton is given (watch.conf, the control socket): no normalization, no file system.
enum PathName {
    /// `("/srv/app", "watch.conf")` for `/srv/app/watch.conf`; the folder is "." for a bare name
    /// and "/" for a file at the root.
    static func split(_ path: String) -> (folder: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let folder = String(path[..<slash])
        return (folder.isEmpty ? "/" : folder, String(path[path.index(after: slash)...]))
    }

    /// The folder that holds `path` (see ``split(_:)``).
    static func folder(of path: String) -> String { split(path).folder }
}
