//! Ephemeral projects: what `provision run` creates, labeled with its owner
//! (host, process id, start time), so that `provision gc` can tell a run
//! still going from one that was killed, with no reaper container. A
//! project `up` created carries no such label and is never collected,
//! unless asked for with `gc --gone` once its folder is deleted.

use std::{
    collections::BTreeMap,
    path::{Component, Path},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures_util::future::join_all;

use crate::{
    engine::{Engine, EngineError, Kind, Labeled, Labels},
    journal::Journal,
    reconcile::label,
};

/// What the `ephemeral` label says: a whole project (`run -- CMD`), or one
/// container in a project `up` made (`run SERVICE -- CMD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Project,
    OneOff,
}

impl Scope {
    fn label(self) -> &'static str {
        match self {
            Scope::Project => "project",
            Scope::OneOff => "one-off",
        }
    }
}

/// The process that made something, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Owner {
    pub host: String,
    pub pid: u32,
    /// When the process started, in Unix seconds (a reused pid has another).
    pub started: u64,
}

impl Owner {
    /// This process.
    pub fn me() -> Owner {
        let pid = std::process::id();
        Owner { host: hostname(), pid, started: process_start(pid).unwrap_or(0) }
    }

    /// The labels that mark what it makes as ephemeral and its own.
    pub fn labels(&self, scope: Scope) -> Labels {
        Labels::from([
            (label("ephemeral"), scope.label().to_string()),
            (label("owner-host"), self.host.clone()),
            (label("owner-pid"), self.pid.to_string()),
            (label("owner-started"), self.started.to_string()),
            (label("created"), now().to_string()),
        ])
    }

    fn of(labels: &Labels) -> Option<Owner> {
        Some(Owner {
            host: labels.get(&label("owner-host"))?.clone(),
            pid: labels.get(&label("owner-pid"))?.parse().ok()?,
            started: labels.get(&label("owner-started"))?.parse().ok()?,
        })
    }

    /// Whether the process still runs: known only on its own host (None
    /// elsewhere: another machine's run is never taken for dead).
    pub fn alive(&self) -> Option<bool> {
        if self.host != hostname() {
            return None;
        }
        // The same pid started at another moment is another process. Start
        // times are read to the second from boot time plus clock ticks.
        Some(process_start(self.pid).is_some_and(|started| started.abs_diff(self.started) <= 2))
    }
}

/// One project gc removed (or, for a one-off, one container of it).
#[derive(Debug, serde::Serialize)]
pub struct Collected {
    pub project: String,
    pub why: String,
    pub containers: usize,
    pub networks: usize,
    pub volumes: usize,
}

/// Remove everything ephemeral whose owner is gone, or with `older_than`,
/// made longer ago than that. `except`: a project never touched (the run
/// calling this). Returns what went, by project.
pub async fn collect(engine: &dyn Engine, older_than: Option<Duration>, except: Option<&str>) -> Result<Vec<Collected>, EngineError> {
    // By project and owner: one-offs in a project `up` made each have their own.
    let mut by_owner: BTreeMap<(String, String), Vec<Labeled>> = BTreeMap::new();
    for item in engine.labeled(&label("ephemeral")).await? {
        if let Some(project) = item.labels.get(&label("project")).filter(|p| Some(p.as_str()) != except) {
            let owner = ["owner-host", "owner-pid", "owner-started"].map(|k| item.labels.get(&label(k)).cloned().unwrap_or_default()).join("/");
            by_owner.entry((project.clone(), owner)).or_default().push(item);
        }
    }
    let mut collected = Vec::new();
    for ((project, _), mut items) in by_owner {
        let Some(why) = why_collect(&items, older_than) else { continue };
        remove(engine, &mut items).await?;
        let whole = items.iter().any(|i| i.labels.get(&label("ephemeral")).map(String::as_str) == Some(Scope::Project.label()));
        // The labels name the project and its folder; they come from the
        // engine, where anyone may have set them: the journal goes only if
        // they make a plain path to a file that is one (not a link).
        let dir = items.first().and_then(|i| i.labels.get(&label("project-dir"))).filter(|_| whole).map(Path::new);
        if let Some(journal) = dir.filter(|d| plain(d)).and_then(|dir| Journal::path(dir, &project))
            && std::fs::symlink_metadata(&journal).is_ok_and(|m| m.is_file())
        {
            let _ = std::fs::remove_file(journal);
        }
        collected.push(Collected::of(project, why, &items));
    }
    Ok(collected)
}

/// `gc --gone`: remove every project (`up`'s too, volumes included) whose
/// folder no longer exists on this machine, a checkout deleted without
/// `provision down`. Only a plain absolute path that is not there counts:
/// a folder that cannot be read, or a label that is no path, is kept.
pub async fn collect_gone(engine: &dyn Engine) -> Result<Vec<Collected>, EngineError> {
    let mut by_dir: BTreeMap<(String, String), Vec<Labeled>> = BTreeMap::new();
    for item in engine.labeled(&label("project-dir")).await? {
        let (Some(project), Some(dir)) = (item.labels.get(&label("project")), item.labels.get(&label("project-dir"))) else { continue };
        if gone(dir) {
            by_dir.entry((project.clone(), dir.clone())).or_default().push(item);
        }
    }
    let mut collected = Vec::new();
    for ((project, dir), mut items) in by_dir {
        remove(engine, &mut items).await?;
        collected.push(Collected::of(project, format!("its folder {dir} is gone"), &items));
    }
    Ok(collected)
}

/// Containers first, together: a network or volume in use cannot go.
async fn remove(engine: &dyn Engine, items: &mut [Labeled]) -> Result<(), EngineError> {
    items.sort_by_key(|i| i.kind);
    let containers: Vec<&Labeled> = items.iter().filter(|i| i.kind == Kind::Container).collect();
    for result in join_all(containers.iter().map(|c| engine.remove_labeled(c))).await {
        result?;
    }
    for item in items.iter().filter(|i| i.kind != Kind::Container) {
        engine.remove_labeled(item).await?;
    }
    Ok(())
}

/// A folder label names a folder that is not there: a plain absolute path
/// of which nothing exists, not even a link (which is not followed).
fn gone(dir: &str) -> bool {
    plain(Path::new(dir)) && std::fs::symlink_metadata(dir).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
}

fn plain(dir: &Path) -> bool {
    dir.is_absolute() && dir.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

impl Collected {
    fn of(project: String, why: String, items: &[Labeled]) -> Collected {
        let count = |kind| items.iter().filter(|i| i.kind == kind).count();
        Collected { project, why, containers: count(Kind::Container), networks: count(Kind::Network), volumes: count(Kind::Volume) }
    }
}

/// Why a project's ephemeral things go, if they do: its owner is gone, or
/// it is older than `older_than`.
fn why_collect(items: &[Labeled], older_than: Option<Duration>) -> Option<String> {
    let labels = &items.first()?.labels;
    if let Some(owner) = Owner::of(labels)
        && owner.alive() == Some(false)
    {
        return Some(format!("its run (pid {} on {}) is gone", owner.pid, owner.host));
    }
    let created = items.iter().filter_map(|i| i.labels.get(&label("created"))?.parse::<u64>().ok()).min()?;
    let age = Duration::from_secs(now().saturating_sub(created));
    older_than.filter(|limit| age > *limit).map(|_| format!("made {} ago", ui_age(age)))
}

fn ui_age(age: Duration) -> String {
    match age.as_secs() {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s => format!("{}h", s / 3600),
    }
}

/// `90s`, `30m`, `2h`, `7d` (for `gc --older-than`).
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = number.parse().map_err(|_| format!("`{text}`: write a number and a unit, e.g. 30m, 2h or 7d"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("`{text}`: the unit is s, m, h or d (e.g. 2h)")),
    };
    Ok(Duration::from_secs(n * seconds))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "unknown".into())
}

/// When process `pid` started, in Unix seconds: boot time plus its start
/// in clock ticks after boot (/proc/PID/stat, field 22). None when there
/// is no such process.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from after its last `)`.
    let ticks: u64 = stat[stat.rfind(')')? + 1..].split_whitespace().nth(19)?.parse().ok()?;
    let boot: u64 = std::fs::read_to_string("/proc/stat").ok()?.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())?;
    // SAFETY: sysconf only reads a constant of the system.
    let per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok().filter(|t| *t > 0)?;
    Some(boot + ticks / per_second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_past_one_is_not() {
        let me = Owner::me();
        assert!(me.started > 0);
        assert_eq!(me.alive(), Some(true));
        assert_eq!(Owner { started: me.started - 3600, ..me.clone() }.alive(), Some(false), "same pid, started at another time");
        assert_eq!(Owner { host: "elsewhere".into(), ..me }.alive(), None);
    }

    #[test]
    fn only_a_plain_folder_of_which_nothing_is_there_is_gone() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("deleted-checkout");
        assert!(gone(missing.to_str().unwrap()));
        assert!(!gone(tmp.path().to_str().unwrap()), "there");
        std::os::unix::fs::symlink("/nowhere", &missing).unwrap();
        assert!(!gone(missing.to_str().unwrap()), "a dangling link is something, and is not followed");
        let dotted = format!("{}/x/../deleted", tmp.path().display());
        assert!(!gone(&dotted) && !gone("relative/deleted") && !gone(""), "not a plain absolute path");
    }

    #[test]
    fn ages_read_as_people_write_them() {
        assert_eq!(parse_age("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_age("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_age("2 hours").is_err() && parse_age("h").is_err());
    }
}
