//! `sync`: the changed files, as a tar the engine unpacks at `/` of a
//! container, and the container paths of the files that are gone. Only
//! the project's own regular files go: a link is not followed (one that
//! points out of the project would hand the container a host file), and a
//! file whose folder resolves outside the project is left out.

use std::{io::Read, os::unix::fs::OpenOptionsExt, path::Path};

use super::Change;
use crate::plan::{policy::is_absolute, watch_policy::inside};

/// The most one batch copies in.
const MAX_BYTES: u64 = 256 << 20;

#[derive(Debug, Default)]
pub struct Copy {
    /// A tar of the files to put, named by their container paths.
    pub archive: Vec<u8>,
    pub files: usize,
    /// Container paths to remove.
    pub gone: Vec<String>,
    /// Left out, and why (a link, not a file, outside the project).
    pub skipped: Vec<String>,
}

pub fn copy(project_dir: &Path, copies: &[(Change, String)]) -> Result<Copy, String> {
    let mut copy = Copy::default();
    let mut tar = tar::Builder::new(Vec::new());
    let mut bytes = 0;
    for (change, target) in copies {
        if !is_absolute(target) {
            copy.skipped.push(format!("{}: {target:?} is not a plain container path", change.path));
            continue;
        }
        if change.gone {
            copy.gone.push(target.clone());
            continue;
        }
        if !inside(project_dir, &change.path) {
            copy.skipped.push(format!("{}: outside the project folder", change.path));
            continue;
        }
        let full = project_dir.join(&change.path);
        // O_NOFOLLOW: the file itself is not a link the container could
        // have swapped in since the event.
        let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(&full);
        let Ok(mut file) = file else {
            copy.skipped.push(format!("{}: a link or unreadable, not copied", change.path));
            continue;
        };
        let meta = file.metadata().map_err(|e| format!("{}: {e}", change.path))?;
        if !meta.is_file() {
            // A folder's own event; its files have events of their own.
            continue;
        }
        bytes += meta.len();
        if bytes > MAX_BYTES {
            return Err(format!("the changed files are over {} MiB; `rebuild` or a bind mount suits that much", MAX_BYTES >> 20));
        }
        let mut contents = Vec::with_capacity(meta.len() as usize);
        file.read_to_end(&mut contents).map_err(|e| format!("{}: {e}", change.path))?;
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777);
        header.set_mtime(meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs()));
        tar.append_data(&mut header, target.trim_start_matches('/'), contents.as_slice()).map_err(|e| format!("{}: {e}", change.path))?;
        copy.files += 1;
    }
    copy.archive = tar.into_inner().map_err(|e| e.to_string())?;
    Ok(copy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(path: &str, gone: bool) -> Change {
        Change { path: path.into(), gone }
    }

    #[test]
    fn files_go_under_their_targets_and_links_stay_behind() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/a.py"), "print(1)").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("src/passwd")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("etc")).unwrap();
        let copies = [
            (change("src/a.py", false), "/app/src/a.py".into()),
            (change("src/passwd", false), "/app/src/passwd".into()),
            (change("etc/hostname", false), "/app/etc/hostname".into()),
            (change("src/b.py", true), "/app/src/b.py".into()),
            (change("src/a.py", false), "/app/../etc/x".into()),
        ];
        let copy = copy(dir.path(), &copies).unwrap();
        assert_eq!(copy.files, 1);
        assert_eq!(copy.gone, ["/app/src/b.py"]);
        assert_eq!(copy.skipped.len(), 3, "{:?}", copy.skipped);
        let mut archive = tar::Archive::new(copy.archive.as_slice());
        let names: Vec<String> = archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
        assert_eq!(names, ["app/src/a.py"]);
    }
}
