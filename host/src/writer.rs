//! One writer per project: `up`, `down` and `run` of a project hold this
//! for as long as they change it, so two never interleave their creates
//! (two `up`s of one project at once left two networks of one name, and
//! every later `up` failed until `down`). Owns the lock; must not be taken
//! by commands that only read (plan, ps, logs, env, exec).
//!
//! The lock is an advisory `flock` on one file per project name in
//! provision's cache folder: machine-wide, as the engine is, and released
//! by the kernel when the process ends however it ends, so a killed `up`
//! never leaves it held. Several machines sharing one engine are not
//! covered (the README says so).

use std::{
    fs::{File, OpenOptions, TryLockError},
    io::{Read, Seek, Write},
    path::Path,
};

/// Held while the project changes; dropping it lets the next one in.
pub struct Writer {
    _file: Option<File>,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("project `{project}` is being changed by another provision ({holder}); nothing was done")]
#[diagnostic(help("wait until it has finished, or stop it; then run this again (one `up`, `down` or `run` of a project at a time)"))]
pub struct Busy {
    pub project: String,
    pub holder: String,
}

impl Writer {
    /// Take the lock of `project` for `command` (e.g. "provision up"), or
    /// say who holds it. Where no lock file can be made (no cache folder),
    /// it goes on unlocked, with a note.
    pub fn claim(project: &str, command: &str) -> Result<Writer, Busy> {
        match crate::runtime::cache_base() {
            Some(dir) => Writer::claim_in(&dir.join("locks"), project, command),
            None => Ok(Writer { _file: None }),
        }
    }

    /// The same, with the lock files in `dir`. Project names are plain
    /// (checked where they are read), so each name is a file name.
    fn claim_in(dir: &Path, project: &str, command: &str) -> Result<Writer, Busy> {
        if !crate::stack::valid_name(project) {
            return Ok(Writer { _file: None });
        }
        let path = dir.join(project);
        let opened = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path));
        let mut file = match opened {
            Ok(file) => file,
            Err(e) => {
                eprintln!("note: {} cannot be made ({e}); going on without the lock that keeps two changes of a project apart", path.display());
                return Ok(Writer { _file: None });
            }
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = (&file).take(1024).read_to_string(&mut holder);
                return Err(Busy { project: project.to_string(), holder: describe(&holder) });
            }
            Err(TryLockError::Error(e)) => {
                eprintln!("note: cannot lock {} ({e}); going on without it", path.display());
                return Ok(Writer { _file: None });
            }
        }
        // Who holds it, for the next one's message.
        let _ = file.set_len(0).and_then(|()| file.rewind()).and_then(|()| write!(file, "{command}\n{}\n{}\n", std::process::id(), now()));
        Ok(Writer { _file: Some(file) })
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// "`provision up`, process 1234, started 5 s ago", from what the holder wrote.
fn describe(written: &str) -> String {
    let mut lines = written.lines();
    match (lines.next(), lines.next(), lines.next().and_then(|t| t.parse::<u64>().ok())) {
        (Some(command), Some(pid), Some(since)) => {
            format!("`{}`, process {}, started {} s ago", crate::ui::plain(command), crate::ui::plain(pid), now().saturating_sub(since))
        }
        _ => "a process that has only just started".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_told_who_holds_the_project() {
        let dir = tempfile::tempdir().unwrap();
        let first = Writer::claim_in(dir.path(), "p", "provision up").unwrap();
        let busy = Writer::claim_in(dir.path(), "p", "provision down").err().expect("a second writer is refused");
        assert!(busy.holder.starts_with("`provision up`, process ") && busy.holder.contains(&std::process::id().to_string()), "{}", busy.holder);
        Writer::claim_in(dir.path(), "other", "provision up").expect("another project is free");
        drop(first);
        Writer::claim_in(dir.path(), "p", "provision down").expect("free once the first is done");
    }
}
