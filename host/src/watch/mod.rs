//! `provision watch`: file events (inotify, through `notify`) turned into
//! batches of changes, and the batches into each service's work by its
//! rules (`rules`); `sync` copies files in (`sync`). The commands that
//! carry the work out are the CLI's own (`cli/watch.rs`).

pub mod rules;
pub mod sync;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::Duration,
};

use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

pub use rules::{Change, Rules, Work};

/// A burst is over after this long without an event…
const QUIET: Duration = Duration::from_millis(100);
/// …or, if events keep coming, after this long.
const LONGEST: Duration = Duration::from_secs(2);

/// The project's files under watch: events arrive on a channel, read in
/// batches by `next`.
pub struct Watcher {
    root: PathBuf,
    events: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
    _watcher: notify::RecommendedWatcher,
    /// How many paths are watched (for the first line).
    pub watched: usize,
}

impl Watcher {
    /// Watch the paths the rules name under `root` (the folder of
    /// stack.toml): a folder with all it holds, a file through the folder
    /// it is in (editors replace a file rather than write it).
    pub fn start(root: &Path, paths: &[String]) -> Result<Watcher, String> {
        let root = root.canonicalize().map_err(|e| format!("{}: {e}", root.display()))?;
        let (sender, events) = mpsc::unbounded_channel();
        let mut watcher = notify::recommended_watcher(move |event| {
            let _ = sender.send(event);
        })
        .map_err(|e| format!("cannot watch files: {e}"))?;
        let mut folders = BTreeSet::new();
        for path in paths {
            let full = root.join(path.trim_start_matches("./"));
            let folder = if full.is_dir() { full } else { full.parent().map(Path::to_path_buf).unwrap_or_else(|| root.clone()) };
            // A folder made later is watched through the nearest one there.
            let folder = folder.ancestors().find(|f| f.is_dir()).unwrap_or(&root).to_path_buf();
            folders.insert(folder);
        }
        // A folder inside another watched one is watched with it.
        let outer: Vec<&PathBuf> = folders.iter().filter(|f| !folders.iter().any(|o| o != *f && f.starts_with(o))).collect();
        for folder in &outer {
            watcher.watch(folder, RecursiveMode::Recursive).map_err(|e| {
                let hint = if e.to_string().contains("No space left") || e.to_string().contains("limit") {
                    "; raise fs.inotify.max_user_watches (sysctl) or narrow the rules' paths"
                } else {
                    ""
                };
                format!("cannot watch {}: {e}{hint}", folder.display())
            })?;
        }
        Ok(Watcher { root, events, _watcher: watcher, watched: outer.len() })
    }

    /// The next batch: waits for a change, then for the burst it starts to
    /// end. None when the watcher is gone.
    pub async fn next(&mut self) -> Option<Vec<Change>> {
        let mut paths = BTreeSet::new();
        let first = self.events.recv().await?;
        self.take(first, &mut paths);
        let until = tokio::time::Instant::now() + LONGEST;
        loop {
            let quiet = (tokio::time::Instant::now() + QUIET).min(until);
            match tokio::time::timeout_at(quiet, self.events.recv()).await {
                Ok(Some(event)) => self.take(event, &mut paths),
                Ok(None) | Err(_) => break,
            }
        }
        let changes =
            paths.into_iter().map(|(path, full): (String, PathBuf)| Change { gone: std::fs::symlink_metadata(&full).is_err(), path }).collect();
        Some(changes)
    }

    fn take(&self, event: notify::Result<notify::Event>, paths: &mut BTreeSet<(String, PathBuf)>) {
        let event = match event {
            Ok(event) => event,
            // A lost event (the kernel's queue overflowed) loses changes:
            // say so rather than act on half of them.
            Err(e) => {
                eprintln!("watch: {e}; some changes may have been missed");
                return;
            }
        };
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        // A folder made or moved in (a checkout, an unpacked archive) holds
        // files written before inotify watched it, which no event names:
        // they are read from the folder itself.
        let arrived = matches!(event.kind, EventKind::Create(_) | EventKind::Modify(notify::event::ModifyKind::Name(_)));
        for full in event.paths {
            if arrived && std::fs::symlink_metadata(&full).is_ok_and(|m| m.is_dir()) {
                self.take_folder(&full, paths);
            }
            self.take_path(full, paths);
        }
    }

    fn take_path(&self, full: PathBuf, paths: &mut BTreeSet<(String, PathBuf)>) {
        if let Some(relative) = full.strip_prefix(&self.root).ok().and_then(Path::to_str) {
            paths.insert((relative.to_string(), full));
        }
    }

    /// Everything under `folder`, links not followed.
    fn take_folder(&self, folder: &Path, paths: &mut BTreeSet<(String, PathBuf)>) {
        for entry in std::fs::read_dir(folder).into_iter().flatten().flatten() {
            let full = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                self.take_folder(&full, paths);
            }
            self.take_path(full, paths);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_of_writes_is_one_batch_with_each_file_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        let mut watcher = Watcher::start(dir.path(), &["src/".into(), "Gemfile.lock".into()]).unwrap();
        for i in 0..200 {
            std::fs::write(dir.path().join(format!("src/{i}.rb")), "x").unwrap();
            std::fs::write(dir.path().join(format!("src/{i}.rb")), "y").unwrap();
        }
        std::fs::write(dir.path().join("Gemfile.lock"), "z").unwrap();
        std::fs::remove_file(dir.path().join("src/7.rb")).unwrap();
        // A new folder's files come before inotify watches it.
        std::fs::create_dir_all(dir.path().join("src/new/deeper")).unwrap();
        for i in 0..50 {
            std::fs::write(dir.path().join(format!("src/new/deeper/{i}.rb")), "x").unwrap();
        }
        let changes = watcher.next().await.unwrap();
        let new: Vec<_> = changes.iter().filter(|c| c.path.starts_with("src/new/deeper/") && c.path.ends_with(".rb")).collect();
        assert_eq!(new.len(), 50, "every file of the new folder: {changes:?}");
        assert_eq!(changes.len(), 201 + 2 + 50, "{changes:?}");
        assert!(changes.contains(&Change { path: "src/7.rb".into(), gone: true }));
        assert!(changes.contains(&Change { path: "Gemfile.lock".into(), gone: false }));
    }
}
