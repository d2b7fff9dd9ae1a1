//! From changed files to work: for each service, the rule whose path holds
//! the change most closely decides what it means; a batch of changes (a
//! `git checkout` of a thousand files) is one piece of work per service,
//! its actions in the one order that makes sense whatever the rules said
//! (copy in, run tasks again, rebuild, restart, then commands).

use std::collections::BTreeMap;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::desired::{DesiredState, WatchAction, WatchRule};

/// Never a change worth acting on: version control, provision's own state,
/// editors' swap and backup files.
const ALWAYS_IGNORED: &[&str] = &[".git/**", "**/.git/**", ".provision/**", "**/*.swp", "**/*.swx", "**/*~", "**/.#*", "**/4913", "**/.DS_Store"];

/// A file that changed, relative to the folder of stack.toml (`/`-separated).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    pub path: String,
    /// It is not there any more.
    pub gone: bool,
}

/// What one service gets to do for a batch.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Work {
    pub actions: Vec<WatchAction>,
    /// For `sync`: each changed file and where it goes in the container.
    pub copies: Vec<(Change, String)>,
    /// The changes that led here, for the user.
    pub because: Vec<String>,
}

/// The rules of every service, compiled once.
pub struct Rules {
    /// (service, rule, its own ignores)
    rules: Vec<(String, WatchRule, GlobSet)>,
    always: GlobSet,
}

impl Rules {
    /// The rules of `services` (None: all) of the plan.
    pub fn of(state: &DesiredState, services: Option<&std::collections::BTreeSet<String>>) -> Result<Rules, String> {
        let mut rules = Vec::new();
        for service in state.services.iter().filter(|s| services.is_none_or(|only| only.contains(&s.name))) {
            for rule in &service.plan.watch {
                let ignores = globs(rule.ignore.iter().flat_map(|p| [p.clone(), format!("**/{p}"), format!("{p}/**"), format!("**/{p}/**")]))
                    .map_err(|e| format!("service `{}`: watch rule {:?}: {e}", service.name, rule.path))?;
                rules.push((service.name.clone(), rule.clone(), ignores));
            }
        }
        Ok(Rules { rules, always: globs(ALWAYS_IGNORED.iter().map(|s| s.to_string())).expect("the built-in patterns are valid") })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The paths the rules name, each once (for the watcher).
    pub fn paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = self.rules.iter().map(|(_, r, _)| r.path.clone()).collect();
        paths.sort();
        paths.dedup();
        paths
    }

    /// The services with rules, each once.
    pub fn services(&self) -> Vec<&str> {
        let mut services: Vec<&str> = self.rules.iter().map(|(s, _, _)| s.as_str()).collect();
        services.dedup();
        services
    }

    /// What each service does for `changes`, by service name.
    pub fn work(&self, changes: &[Change]) -> BTreeMap<String, Work> {
        let mut work: BTreeMap<String, Work> = BTreeMap::new();
        for change in changes.iter().filter(|c| !self.always.is_match(&c.path)) {
            // Per service, the rule with the longest path holding the change;
            // None: its ignores say the change means nothing (to any rule).
            let mut chosen: BTreeMap<&str, (&WatchRule, Option<&str>)> = BTreeMap::new();
            for (service, rule, ignores) in &self.rules {
                let Some(under) = under(&rule.path, &change.path) else { continue };
                if chosen.get(service.as_str()).is_some_and(|(r, _)| r.path.len() >= rule.path.len()) {
                    continue;
                }
                let ignored = !under.is_empty() && ignores.is_match(under);
                chosen.insert(service, (rule, (!ignored).then_some(under)));
            }
            for (service, (rule, under)) in chosen {
                let Some(under) = under.filter(|_| !rule.actions.is_empty()) else { continue };
                let w = work.entry(service.to_string()).or_default();
                for action in &rule.actions {
                    if let WatchAction::Sync(target) = action {
                        let to = if under.is_empty() { target.clone() } else { format!("{}/{under}", target.trim_end_matches('/')) };
                        w.copies.push((change.clone(), to));
                    }
                    let same_kind = |a: &WatchAction| std::mem::discriminant(a) == std::mem::discriminant(action);
                    if !w.actions.iter().any(|a| a == action || (same_kind(a) && matches!(action, WatchAction::Sync(_)))) {
                        w.actions.push(action.clone());
                    }
                }
                w.because.push(change.path.clone());
            }
        }
        for w in work.values_mut() {
            w.actions.sort_by_key(order);
            if w.actions.contains(&WatchAction::Rebuild) {
                // A new container has the new files and runs its tasks.
                w.actions.retain(|a| !matches!(a, WatchAction::Sync(_) | WatchAction::Restart | WatchAction::Rerun(_)));
                w.copies.clear();
            }
        }
        work.retain(|_, w| !w.actions.is_empty());
        work
    }
}

/// Copy in, run tasks again, rebuild, restart, then run commands.
fn order(action: &WatchAction) -> u8 {
    match action {
        WatchAction::Sync(_) => 0,
        WatchAction::Rerun(_) => 1,
        WatchAction::Rebuild => 2,
        WatchAction::Restart => 3,
        WatchAction::Exec(_) => 4,
    }
}

/// `change` relative to the rule's `path` if the path holds it: "" for the
/// file itself. `./` holds everything.
fn under<'a>(path: &str, change: &'a str) -> Option<&'a str> {
    let path = path.trim_start_matches("./").trim_end_matches('/');
    if path.is_empty() || path == "." {
        return Some(change);
    }
    if change == path {
        return Some("");
    }
    change.strip_prefix(path)?.strip_prefix('/')
}

fn globs(patterns: impl Iterator<Item = String>) -> Result<GlobSet, globset::Error> {
    let mut set = GlobSetBuilder::new();
    for pattern in patterns {
        set.add(Glob::new(&pattern)?);
    }
    set.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{ServicePlan, ServiceState};

    fn rule(path: &str, actions: Vec<WatchAction>) -> WatchRule {
        WatchRule { path: path.into(), ignore: vec![], actions }
    }

    fn state(services: Vec<(&str, Vec<WatchRule>)>) -> DesiredState {
        let services = services
            .into_iter()
            .map(|(name, watch)| ServiceState {
                name: name.into(),
                plugin: "x".into(),
                depends_on: vec![],
                plan: ServicePlan { watch, ..ServicePlan::default() },
            })
            .collect();
        let mut state: DesiredState =
            serde_json::from_value(serde_json::json!({"project": "p", "profile": "dev", "plugins": [], "services": []})).unwrap();
        state.services = services;
        state
    }

    fn changed(paths: &[&str]) -> Vec<Change> {
        paths.iter().map(|p| Change { path: p.to_string(), gone: false }).collect()
    }

    fn rails() -> DesiredState {
        let gems = vec![WatchAction::Rerun("bundle".into()), WatchAction::Restart];
        state(vec![
            ("web", vec![rule("app/Gemfile.lock", gems), rule("app/config/", vec![WatchAction::Restart]), rule("app/app/", vec![])]),
            ("worker", vec![rule("app/Gemfile.lock", vec![WatchAction::Restart]), rule("app/app/", vec![])]),
        ])
    }

    #[test]
    fn the_closest_rule_decides_and_a_rule_without_actions_means_nothing() {
        let rules = Rules::of(&rails(), None).unwrap();
        assert!(rules.work(&changed(&["app/app/models/user.rb"])).is_empty(), "Rails reloads app/");
        let work = rules.work(&changed(&["app/Gemfile.lock"]));
        assert_eq!(work["web"].actions, [WatchAction::Rerun("bundle".into()), WatchAction::Restart]);
        assert_eq!(work["worker"].actions, [WatchAction::Restart]);
        assert!(rules.work(&changed(&["app/Gemfile.lock.bak", "README.md"])).is_empty(), "a file rule is that file only");
    }

    #[test]
    fn a_burst_is_one_piece_of_work_per_service_in_a_sensible_order() {
        let rules = Rules::of(&rails(), None).unwrap();
        let mut burst: Vec<String> = (0..1000).map(|i| format!("app/config/locales/{i}.yml")).collect();
        burst.push("app/Gemfile.lock".into());
        let work = rules.work(&changed(&burst.iter().map(String::as_str).collect::<Vec<_>>()));
        assert_eq!(work.len(), 2);
        // config/ said restart first; the task still runs before it.
        assert_eq!(work["web"].actions, [WatchAction::Rerun("bundle".into()), WatchAction::Restart]);
        assert_eq!(work["web"].because.len(), 1001);
    }

    #[test]
    fn sync_copies_each_file_under_its_target_and_ignores_what_the_rule_ignores() {
        let mut sync = rule("src/", vec![WatchAction::Sync("/app/src".into())]);
        sync.ignore = vec!["*.pyc".into(), "cache".into()];
        let rules = Rules::of(&state(vec![("api", vec![sync, rule("./", vec![WatchAction::Rebuild])])]), None).unwrap();
        let work = rules.work(&changed(&["src/a/b.py", "src/a/b.pyc", "src/cache/x", ".git/index", "src/.main.py.swp"]));
        assert_eq!(work["api"].actions, [WatchAction::Sync("/app/src".into())]);
        assert_eq!(work["api"].copies, [(changed(&["src/a/b.py"])[0].clone(), "/app/src/a/b.py".into())]);
        // Anything else in the context: a rebuild, which a sync then needs not.
        let work = rules.work(&changed(&["src/a/b.py", "Dockerfile"]));
        assert_eq!(work["api"].actions, [WatchAction::Rebuild]);
        assert!(work["api"].copies.is_empty());
    }

    #[test]
    fn only_the_watched_services_rules_count() {
        let only = std::collections::BTreeSet::from(["worker".to_string()]);
        let rules = Rules::of(&rails(), Some(&only)).unwrap();
        assert_eq!(rules.work(&changed(&["app/Gemfile.lock"])).keys().collect::<Vec<_>>(), ["worker"]);
        assert_eq!(rules.paths(), ["app/Gemfile.lock", "app/app/"]);
    }
}
