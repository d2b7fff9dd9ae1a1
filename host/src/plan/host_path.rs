//! Host paths a plan names (binds, build contexts, and through binds TLS
//! files and init scripts), resolved the way the engine will use them:
//! symlinks followed, at the moment of use. Checked as text they lie: a link
//! inside the project can point at /etc or the engine's socket. Must not
//! create anything: a missing path is refused, because the engine would
//! create it on the host.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use crate::{
    desired::{HostPaths, MountSource, ServiceState},
    stack::{Stack, StackError},
};

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

/// `written` resolved again now, at its use, if that is still where `plan`
/// resolved and checked it (`pins`, the state's `host_paths`).
pub fn pinned(pins: &HostPaths, project_dir: &Path, written: &str) -> Result<PathBuf, String> {
    let planned = pins.get(written).ok_or_else(|| format!("{written:?} was not checked when the stack was planned"))?;
    let now = resolve(project_dir, written)?.real;
    if now != *planned {
        return Err(format!(
            "{written:?} now leads to {}, not to {} as when it was planned: something changed it since; refusing it (`provision plan` checks it again)",
            now.display(),
            planned.display()
        ));
    }
    Ok(now)
}

/// The rule for host paths a container could change: a container may write
/// into a bind, so a path that runs through a folder a plugin's container
/// can write is not safe to hand to the engine. The engine resolves a
/// bind's path when it starts the container, and again at every restart;
/// by then such a container (a plugin's own task, say) could have swapped
/// a folder on the way for a link to `/var/run` or to `..`. So a read-only
/// bind inside such a folder is handed over by copy instead (read with no
/// link followed, placed when the container is created), and a writable one
/// is refused. A bind of the writable folder itself is safe: no container
/// can swap a folder that is mounted. Build contexts need no such care:
/// the host reads them itself, with no link followed.
///
/// The writers that count are the containers of third-party plugins
/// (`third_party(plugin)`): a built-in's containers run the images and
/// commands you chose, as Compose's do (Airflow's own compose file has one
/// service write the project folder and others bind folders inside it).
pub(super) fn hand_over_inside_writable(
    stack: &Stack,
    planned: &mut BTreeMap<&str, ServiceState>,
    pins: &HostPaths,
    third_party: &dyn Fn(&str) -> bool,
) -> Result<(), StackError> {
    let mut writable: Vec<(&PathBuf, String)> = Vec::new();
    for state in planned.values().filter(|s| third_party(&s.plugin)) {
        for c in state.plan.containers.iter().chain(&state.plan.tasks) {
            for m in c.mounts.iter().filter(|m| !m.read_only) {
                if let MountSource::Bind(written) = &m.source
                    && let Some(real) = pins.get(written)
                {
                    writable.push((real, format!("container `{}` of service `{}` (plugin `{}`)", c.name, state.name, state.plugin)));
                }
            }
        }
    }
    for state in planned.values_mut() {
        let name = state.name.clone();
        for c in state.plan.containers.iter_mut().chain(state.plan.tasks.iter_mut()) {
            for m in &mut c.mounts {
                let MountSource::Bind(written) = &m.source else { continue };
                let Some(real) = pins.get(written) else { continue };
                let Some((folder, writer)) = writable.iter().find(|(folder, _)| real != *folder && real.starts_with(folder)) else { continue };
                if !m.read_only {
                    return Err(stack.error_at(
                        &format!("services.{name}"),
                        format!(
                            "service `{name}` binds {} writable, inside {}, which {writer} can write: a container could swap a folder on \
                             the way for a link to anywhere on the host before the engine mounts it",
                            real.display(),
                            folder.display()
                        ),
                        "planned here",
                        Some("bind a folder that no container writes into, or use a named volume (e.g. `volumes = [\"data:/data\"]`)".into()),
                    ));
                }
                m.source = MountSource::Copy(written.clone());
            }
        }
    }
    Ok(())
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
