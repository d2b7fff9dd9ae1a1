//! A service's `watch` key: the user's watch rules, which add to the
//! plugin's or replace the plugin's rule for the same path.
//!
//! ```toml
//! watch = [
//!   { path = "app/config/", action = "restart" },
//!   { path = "app/Gemfile.lock", action = ["rerun", "restart"], task = "bundle" },
//!   { path = "src/", action = "sync", target = "/app/src", ignore = ["*.pyc"] },
//!   { path = "nginx/", action = "exec", command = "nginx -s reload" },
//!   { path = "docs/", action = "none" },
//! ]
//! ```

use serde::Deserialize;

use super::options::OptionError;
use crate::desired::{WatchAction, WatchRule};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    path: String,
    action: Actions,
    /// Where `sync` copies to.
    target: Option<String>,
    /// What `rerun` runs.
    task: Option<String>,
    /// What `exec` runs: a string (by /bin/sh -c) or a list of arguments.
    command: Option<Command>,
    #[serde(default)]
    ignore: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged, expecting = "an action (\"sync\", \"restart\", \"rebuild\", \"rerun\", \"exec\", \"none\") or a list of them")]
enum Actions {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged, expecting = "a command: a string (run by /bin/sh -c) or a list of arguments")]
enum Command {
    Shell(String),
    Argv(Vec<String>),
}

pub(super) fn rules(raw: Vec<RawRule>) -> Result<Vec<WatchRule>, OptionError> {
    raw.into_iter().enumerate().map(|(i, rule)| rule.check(&format!("watch.{i}"))).collect()
}

impl RawRule {
    fn check(self, at: &str) -> Result<WatchRule, OptionError> {
        let error = |key: &str, message: String| OptionError { key: format!("{at}{key}"), message };
        if self.path.is_empty() || self.path.starts_with('/') || self.path.split('/').any(|part| part == "..") {
            return Err(error(".path", format!("{:?}: a path relative to the folder of stack.toml, inside it (a folder ends in /)", self.path)));
        }
        let names = match self.action {
            Actions::One(name) => name.split('+').map(str::to_string).collect(),
            Actions::Many(names) => names,
        };
        let mut actions = Vec::new();
        for name in names {
            let needs = |key: &str, what: &str| error(&format!(".{key}"), format!("action `{name}` needs `{key}`: {what}"));
            actions.push(match name.as_str() {
                "none" => continue,
                "restart" => WatchAction::Restart,
                "rebuild" => WatchAction::Rebuild,
                "sync" => WatchAction::Sync(self.target.clone().ok_or_else(|| needs("target", "the container folder to copy into"))?),
                "rerun" => WatchAction::Rerun(self.task.clone().ok_or_else(|| needs("task", "the name of one of the service's tasks"))?),
                "exec" => WatchAction::Exec(match self.command.as_ref().ok_or_else(|| needs("command", "what to run in the container"))? {
                    Command::Shell(line) => vec!["/bin/sh".into(), "-c".into(), line.clone()],
                    Command::Argv(argv) => argv.clone(),
                }),
                other => {
                    return Err(error(".action", format!("{other:?} is not an action: sync, restart, rebuild, rerun, exec or none")));
                }
            });
        }
        Ok(WatchRule { path: self.path, ignore: self.ignore, actions })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> Result<Vec<WatchRule>, OptionError> {
        #[derive(Deserialize)]
        struct T {
            watch: Vec<RawRule>,
        }
        rules(toml::from_str::<T>(toml).unwrap().watch)
    }

    #[test]
    fn each_action_is_spelled_as_in_the_readme() {
        let rules = parse(
            r#"watch = [
              { path = "app/Gemfile.lock", action = ["rerun", "restart"], task = "bundle" },
              { path = "src/", action = "sync+restart", target = "/app/src", ignore = ["*.pyc"] },
              { path = "nginx/", action = "exec", command = "nginx -s reload" },
              { path = "docs/", action = "none" },
            ]"#,
        )
        .unwrap();
        assert_eq!(rules[0].actions, [WatchAction::Rerun("bundle".into()), WatchAction::Restart]);
        assert_eq!(rules[1].actions, [WatchAction::Sync("/app/src".into()), WatchAction::Restart]);
        assert_eq!(rules[1].ignore, ["*.pyc"]);
        assert_eq!(rules[2].actions, [WatchAction::Exec(vec!["/bin/sh".into(), "-c".into(), "nginx -s reload".into()])]);
        assert!(rules[3].actions.is_empty());
    }

    #[test]
    fn errors_name_the_rule_and_key() {
        let key = |toml: &str| parse(toml).unwrap_err().key;
        assert_eq!(key(r#"watch = [{ path = "a", action = "restart" }, { path = "../x", action = "restart" }]"#), "watch.1.path");
        assert_eq!(key(r#"watch = [{ path = "a", action = "sync" }]"#), "watch.0.target");
        assert_eq!(key(r#"watch = [{ path = "a", action = "rerun" }]"#), "watch.0.task");
        assert_eq!(key(r#"watch = [{ path = "a", action = "reload" }]"#), "watch.0.action");
    }
}
