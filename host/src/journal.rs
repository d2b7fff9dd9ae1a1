//! The lifecycle journal: how far each container of a project got (created
//! → files placed → started → ready with hooks done; a task: exited 0 after
//! being started), written at every step, so an `up` that was
//! killed part-way is never mistaken for a converged one. Also keeps each
//! container's spec, which `plan` uses to explain a recreate (labels hold
//! only its hash: a spec has env values and file contents, secrets among
//! them). Lives in the project's `.provision/state/`, which no container
//! sees. Must not decide anything: reconcile and apply read it.

use std::{
    collections::{BTreeMap, HashSet},
    io::Write,
    path::{Path, PathBuf},
    sync::Mutex,
};

use serde::{Deserialize, Serialize};

use crate::desired::Container;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Created,
    FilesPlaced,
    Started,
    /// Ready and its hooks run; for a task, exited 0.
    Done,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub stage: Stage,
    /// The engine's start time of the start it was seen ready in: a
    /// container that has not restarted since needs no probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_in: Option<String>,
    /// `provision stop` stopped it (ps says "stopped", not "exited").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
    pub spec: serde_json::Value,
}

/// By container id. Shared by the services of one `up`, which run at once.
pub struct Journal {
    path: Option<PathBuf>,
    entries: Mutex<BTreeMap<String, Entry>>,
}

impl Journal {
    /// `.provision/state/PROJECT.json` in the project folder. None for a
    /// name that is no project's: a name read back from the engine (a
    /// label) is data, and `../x` must not become a path.
    pub fn path(project_dir: &Path, project: &str) -> Option<PathBuf> {
        crate::stack::valid_name(project).then(|| project_dir.join(".provision").join("state").join(format!("{project}.json")))
    }

    /// The journal of `project` in `project_dir` (in memory only for a name
    /// that is no project's, which the command line never lets through).
    pub fn of(project_dir: &Path, project: &str) -> Journal {
        Journal::path(project_dir, project).map_or_else(Journal::in_memory, Journal::open)
    }

    /// The journal at `path`; empty when there is none or it is unreadable
    /// (then every container is unknown, and recreated: safe, only slower).
    pub fn open(path: PathBuf) -> Journal {
        let entries = std::fs::read(&path).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default();
        Journal { path: Some(path), entries: Mutex::new(entries) }
    }

    /// A journal kept in memory only (tests, and engines without a project folder).
    pub fn in_memory() -> Journal {
        Journal { path: None, entries: Mutex::new(BTreeMap::new()) }
    }

    pub fn entry(&self, id: &str) -> Option<Entry> {
        self.lock().get(id).cloned()
    }

    /// Whether the container's lifecycle ran to its end.
    pub fn completed(&self, id: &str) -> bool {
        self.lock().get(id).is_some_and(|e| e.stage == Stage::Done)
    }

    /// The start it was last seen ready in (see `Entry::ready_in`).
    pub fn ready_in(&self, id: &str) -> Option<String> {
        self.lock().get(id).and_then(|e| e.ready_in.clone())
    }

    /// A container was just created with `spec`.
    pub fn created(&self, id: &str, spec: &Container) {
        let spec = serde_json::to_value(spec).expect("a container serializes");
        self.update(|entries| {
            entries.insert(id.to_string(), Entry { stage: Stage::Created, ready_in: None, stopped: false, spec });
        });
    }

    pub fn reached(&self, id: &str, stage: Stage) {
        self.update(|entries| {
            if let Some(entry) = entries.get_mut(id) {
                entry.stage = stage;
                entry.stopped = false;
            }
        });
    }

    /// Stopped on purpose (`provision stop`), until it starts again.
    pub fn stopped(&self, id: &str) {
        self.update(|entries| {
            if let Some(entry) = entries.get_mut(id) {
                entry.stopped = true;
            }
        });
    }

    /// Ready (and hooks run) in the start that began at `started_at`.
    pub fn done(&self, id: &str, started_at: Option<String>) {
        self.update(|entries| {
            if let Some(entry) = entries.get_mut(id) {
                entry.stage = Stage::Done;
                entry.ready_in = started_at;
            }
        });
    }

    /// Keep only these containers (the others were removed).
    pub fn retain(&self, ids: &HashSet<&str>) {
        self.update(|entries| entries.retain(|id, _| ids.contains(id.as_str())));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Change, then write through: temp file and rename, so a killed process
    /// leaves the old journal or the new one, never half of one. No fsync:
    /// the journal only ever records progress, so one that lost its last
    /// writes in a machine crash can only make `up` redo steps (an unknown
    /// container is recreated), never skip one; a journal that cannot be
    /// read or written costs the same, and nothing else.
    fn update(&self, change: impl FnOnce(&mut BTreeMap<String, Entry>)) {
        let mut entries = self.lock();
        change(&mut entries);
        if let Some(path) = &self.path {
            let _ = write_atomically(path, &serde_json::to_vec(&*entries).expect("JSON"));
        }
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().expect("a file in a folder");
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let written = (|| {
        // Specs hold secrets: readable by the user only.
        let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        file.write_all(bytes)?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::Image;

    #[test]
    fn stages_survive_a_restart_of_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = Journal::path(dir.path(), "p").unwrap();
        assert_eq!(Journal::path(dir.path(), "../../x"), None, "a label is not a path");
        let journal = Journal::open(path.clone());
        journal.created("a", &Container::new("server", Image::Pull("redis".into())));
        journal.reached("a", Stage::Started);
        journal.created("b", &Container::new("migrate", Image::Pull("app".into())));
        journal.done("b", None);

        let reopened = Journal::open(path);
        assert_eq!(reopened.entry("a").unwrap().stage, Stage::Started);
        assert!(!reopened.completed("a"));
        assert!(reopened.completed("b"));
        assert!(!reopened.completed("unknown"));
        reopened.retain(&HashSet::from(["b"]));
        assert!(reopened.entry("a").is_none());
    }
}
