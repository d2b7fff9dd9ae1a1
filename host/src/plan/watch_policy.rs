//! Watch rules, whoever wrote them, are checked as binds are: a rule's
//! path is the project's (relative, no `..`, and no link on the way that
//! leads out of it), a `sync` writes only to a plain path in the
//! container, a `rerun` names a task of this very plan, and no action runs
//! anything on the host (there is no such action to name).

use std::path::{Component, Path};

use super::policy::{Refusal, is_absolute};
use crate::desired::{ServicePlan, WatchAction};

/// More than this many rules for one service is a mistake or an attack.
pub const MAX_RULES: usize = 256;

pub fn check(plan: &ServicePlan, project_dir: &Path) -> Result<(), Refusal> {
    let refuse = |message: String| Refusal { message, permission: None };
    if plan.watch.len() > MAX_RULES {
        return Err(refuse(format!("its plan has {} watch rules, over the limit of {MAX_RULES} for one service", plan.watch.len())));
    }
    for (i, rule) in plan.watch.iter().enumerate() {
        let at = format!("watch.{i}");
        if !inside(project_dir, &rule.path) {
            return Err(refuse(format!(
                "{at}.path {:?} is not a path inside the project folder {}: a watch rule names the project's own files",
                rule.path,
                project_dir.display()
            )));
        }
        for (j, action) in rule.actions.iter().enumerate() {
            match action {
                WatchAction::Sync(target) if !is_absolute(target) || target == "/" => {
                    return Err(refuse(format!("{at}.actions.{j} syncs to {target:?}, which is not a plain absolute folder in the container")));
                }
                WatchAction::Rerun(task) if !plan.tasks.iter().any(|t| &t.name == task) => {
                    return Err(refuse(format!("{at}.actions.{j} reruns task `{task}`, which is not one of this service's tasks")));
                }
                WatchAction::Exec(command) if command.first().is_none_or(String::is_empty) => {
                    return Err(refuse(format!("{at}.actions.{j} runs an empty command")));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// `path` (relative to `project_dir`) names something inside it, now: no
/// `..`, not absolute, and the part of it that exists resolves inside.
pub fn inside(project_dir: &Path, path: &str) -> bool {
    let relative = Path::new(path);
    if path.is_empty() || path.contains('\0') || !relative.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
        return false;
    }
    let Ok(root) = project_dir.canonicalize() else { return false };
    // The deepest part that exists, with every link on the way followed.
    let mut existing = project_dir.join(relative);
    loop {
        if let Ok(real) = existing.canonicalize() {
            return real.starts_with(&root);
        }
        if !existing.pop() {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{Container, Image, WatchRule};

    fn plan(path: &str, actions: Vec<WatchAction>) -> ServicePlan {
        let task = Container::new("bundle", Image::Pull("app:1".into()));
        ServicePlan { tasks: vec![task], watch: vec![WatchRule { path: path.into(), ignore: vec![], actions }], ..ServicePlan::default() }
    }

    #[test]
    fn a_rule_names_the_projects_files_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("app")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("app/etc")).unwrap();
        for ok in ["app/", "app/Gemfile.lock", "./", "not/there/yet"] {
            assert!(check(&plan(ok, vec![WatchAction::Restart]), dir.path()).is_ok(), "{ok}");
        }
        for bad in ["../x", "/etc/passwd", "app/../../x", "", "app/etc/passwd", "app/etc/"] {
            let refusal = check(&plan(bad, vec![WatchAction::Restart]), dir.path()).unwrap_err();
            assert!(refusal.message.starts_with("watch.0.path"), "{bad}: {}", refusal.message);
        }
    }

    #[test]
    fn actions_stay_in_the_services_own_containers() {
        let dir = tempfile::tempdir().unwrap();
        let refused = |action: WatchAction| check(&plan("app/", vec![WatchAction::Restart, action]), dir.path()).unwrap_err().message;
        assert!(refused(WatchAction::Sync("relative".into())).contains("watch.0.actions.1 syncs"));
        assert!(refused(WatchAction::Sync("/app/../etc".into())).contains("not a plain absolute folder"));
        assert!(refused(WatchAction::Rerun("migrate".into())).contains("not one of this service's tasks"));
        assert!(refused(WatchAction::Exec(vec![])).contains("empty command"));
        assert!(check(&plan("app/", vec![WatchAction::Rerun("bundle".into()), WatchAction::Sync("/app".into())]), dir.path()).is_ok());
    }
}
