//! Host paths a plan names (binds, build contexts, and through binds TLS
//! files and init scripts), resolved the way the engine will use them:
//! symlinks followed, at the moment of use. Checked as text they lie: a link
//! inside the project can point at /etc or the engine's socket. Must not
//! create anything: a missing path is refused, because the engine would
//! create it on the host.

use std::path::{Path, PathBuf};

/// Folders of the project no container ever sees: the project's state and
/// keys (`.provision`), and `.git` (its hooks run on the host).
pub const HIDDEN: &[&str] = &[".provision", ".git"];

/// A host path, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct HostPath {
    /// With every symlink followed.
    pub real: PathBuf,
    /// Inside the project folder (after following links).
    pub inside: bool,
}

/// Resolve `written` (relative to the project folder, or absolute). Refuses
/// a path that does not exist, and anything inside a hidden folder.
pub fn resolve(project_dir: &Path, written: &str) -> Result<HostPath, String> {
    let project = project_dir.canonicalize().map_err(|e| format!("the project folder {}: {e}", project_dir.display()))?;
    // `~/x`: the user's home folder, as a shell would read it.
    let joined = match (written.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(below), Some(home)) => Path::new(&home).join(below),
        _ => project_dir.join(written),
    };
    let real = joined.canonicalize().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{written:?} does not exist ({}); create it first", shown(&joined).display()),
        _ => format!("{written:?} ({}): {e}", shown(&joined).display()),
    })?;
    if let Some(hidden) = HIDDEN.iter().find(|h| real.starts_with(project.join(h))) {
        return Err(format!("{written:?} is inside the project's {hidden} folder, which no container may see"));
    }
    Ok(HostPath { inside: real.starts_with(&project), real })
}

/// `path` as the user would type it from here: relative to the current
/// folder when below it, like the stack.toml path in a report.
fn shown(path: &Path) -> &Path {
    std::env::current_dir().ok().and_then(|here| path.strip_prefix(here).ok()).unwrap_or(path)
}

/// The hidden folders that a bind of `real` would expose, as paths below
/// it: each gets an empty mount over it in the container.
pub fn hidden_below(project_dir: &Path, real: &Path) -> Vec<PathBuf> {
    let Ok(project) = project_dir.canonicalize() else { return Vec::new() };
    HIDDEN.iter().map(|h| project.join(h)).filter(|h| h.exists()).filter_map(|h| h.strip_prefix(real).ok().map(Path::to_path_buf)).collect()
}

/// Whether `path` names the same place as `other` (both relative to the
/// project folder), once resolved. For "did the user name this path".
pub fn same(project_dir: &Path, path: &Path, other: &str) -> bool {
    let other = project_dir.join(other).canonicalize();
    matches!(other, Ok(other) if other == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_followed_and_hidden_folders_refused() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("p");
        std::fs::create_dir_all(project.join(".provision")).unwrap();
        std::fs::create_dir_all(project.join("app")).unwrap();
        std::os::unix::fs::symlink("/etc", project.join("etc-link")).unwrap();
        std::os::unix::fs::symlink(".provision", project.join("state")).unwrap();

        assert!(resolve(&project, "app").unwrap().inside);
        let link = resolve(&project, "etc-link").unwrap();
        assert_eq!((link.real.as_path(), link.inside), (Path::new("/etc"), false));
        assert!(resolve(&project, "state").unwrap_err().contains(".provision"));
        assert!(resolve(&project, ".provision/secret-key").unwrap_err().contains(".provision"));
        assert!(resolve(&project, "missing").unwrap_err().contains("does not exist"));
        assert!(!resolve(&project, "../").unwrap().inside);

        let root = project.canonicalize().unwrap();
        assert_eq!(hidden_below(&project, &root), vec![PathBuf::from(".provision")]);
        assert!(hidden_below(&project, &root.join("app")).is_empty());
    }
}
