//! Watch rules: what a change to a project file means for a service
//! (contract 0.5.0's `watch-rule`, or the user's `watch` in stack.toml).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WatchRule {
    /// Relative to the folder of stack.toml; a folder ends in `/`.
    pub path: String,
    /// `.dockerignore`-style patterns under `path` that mean nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<String>,
    /// In order; empty: the change needs nothing.
    pub actions: Vec<WatchAction>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum WatchAction {
    /// Copy the changed files in, under this absolute container path.
    Sync(String),
    Restart,
    Rebuild,
    /// One of the service's tasks, by name.
    Rerun(String),
    /// A command in the service's first container.
    Exec(Vec<String>),
}

impl std::fmt::Display for WatchAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WatchAction::Sync(target) => write!(f, "sync to {target}"),
            WatchAction::Restart => f.write_str("restart"),
            WatchAction::Rebuild => f.write_str("rebuild"),
            WatchAction::Rerun(task) => write!(f, "rerun {task}"),
            WatchAction::Exec(command) => write!(f, "exec {}", command.join(" ")),
        }
    }
}
