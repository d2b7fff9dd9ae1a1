//! What `provision cp SERVICE:PATH LOCAL` writes on the host: a tar the
//! container's engine sends, which a container's own files (an image of
//! anywhere, an app that was broken into) decide. So only regular files and
//! folders are written, each under the destination: no name with `..` or a
//! root, no link, device or FIFO made, no file written through a link that
//! is there already (`O_NOFOLLOW`) nor into a folder that is one, no
//! set-user-id bit kept, and no more than `MAX_BYTES` in all.

use std::{
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Component, Path, PathBuf},
};

/// The most one copy out writes.
pub const MAX_BYTES: u64 = 4 << 30;

#[derive(Debug, Default, PartialEq)]
pub struct Unpacked {
    pub files: usize,
    pub bytes: u64,
    /// Entries not written, and why.
    pub skipped: Vec<String>,
}

/// Write `archive`'s entries under `dest` (a folder that exists), the
/// first part of each name replaced by `root` when given (`cp
/// web:/app/log ./logs` writes `./logs/…`, not `./logs/log/…`).
pub fn unpack(archive: impl std::io::Read, dest: &Path, root: Option<&str>) -> Result<Unpacked, String> {
    let mut done = Unpacked::default();
    let mut archive = tar::Archive::new(archive);
    for entry in archive.entries().map_err(|e| format!("reading what the container sent: {e}"))? {
        let mut entry = entry.map_err(|e| format!("reading what the container sent: {e}"))?;
        let name = entry.path().map_err(|e| e.to_string())?.into_owned();
        let Some(relative) = plain(&name, root) else {
            done.skipped.push(format!("{}: not a plain relative name", name.display()));
            continue;
        };
        let full = dest.join(&relative);
        let kind = entry.header().entry_type();
        let made = if kind.is_dir() {
            folders(dest, &relative)
        } else if kind.is_file() {
            folders(dest, relative.parent().unwrap_or(Path::new(""))).and_then(|()| {
                let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(mode)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&full)
                    .map_err(|e| format!("{}: {e}", full.display()))?;
                let size = entry.header().size().unwrap_or(0);
                if done.bytes + size > MAX_BYTES {
                    return Err(format!("over {} GiB: stopped at {} (copy less at a time)", MAX_BYTES >> 30, relative.display()));
                }
                let copied = std::io::copy(&mut std::io::Read::take(&mut entry, size), &mut file).map_err(|e| format!("{}: {e}", full.display()))?;
                file.flush().map_err(|e| e.to_string())?;
                done.bytes += copied;
                done.files += 1;
                Ok(())
            })
        } else {
            done.skipped.push(format!("{}: a link or special file, not made here", relative.display()));
            continue;
        };
        made?;
    }
    Ok(done)
}

/// `name` as a path of plain parts, its first part `root` when given.
fn plain(name: &Path, root: Option<&str>) -> Option<PathBuf> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in name.components() {
        match c {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    if let (Some(root), Some(first)) = (root, parts.first_mut()) {
        *first = std::ffi::OsStr::new(root);
    }
    (!parts.is_empty()).then(|| parts.iter().collect())
}

/// Every folder from `dest` down to `dest/relative`: made where missing,
/// and refused where something there is not a real folder (a link).
fn folders(dest: &Path, relative: &Path) -> Result<(), String> {
    let mut at = dest.to_path_buf();
    for part in relative.components() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(format!("{} is there and is not a folder (a link is not followed)", at.display())),
            Err(_) => std::fs::create_dir(&at).map_err(|e| format!("{}: {e}", at.display()))?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, data, link) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_size(data.len() as u64);
            header.set_mode(0o4755);
            if let Some(link) = link {
                header.set_link_name(link).unwrap();
            }
            // Names a well-behaved writer would refuse go in as raw bytes.
            let bytes = name.as_bytes();
            header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn only_plain_files_and_folders_are_written_under_the_destination() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("victim"), dir.path().join("victim")).unwrap();
        let archive = tar(&[
            ("log/", tar::EntryType::Directory, b"", None),
            ("log/app.log", tar::EntryType::Regular, b"hello", None),
            ("log/../../escape", tar::EntryType::Regular, b"x", None),
            ("/etc/cron.d/x", tar::EntryType::Regular, b"x", None),
            ("log/passwd", tar::EntryType::Symlink, b"", Some("/etc/passwd")),
            ("log/null", tar::EntryType::Char, b"", None),
        ]);
        let done = unpack(archive.as_slice(), dir.path(), Some("logs")).unwrap();
        assert_eq!((done.files, done.bytes), (1, 5));
        assert_eq!(done.skipped.len(), 4, "{:?}", done.skipped);
        assert_eq!(std::fs::read_to_string(dir.path().join("logs/app.log")).unwrap(), "hello");
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir.path().join("logs/app.log")).unwrap().permissions());
        assert_eq!(mode & 0o7000, 0, "no set-user-id bit");
        assert!(!dir.path().join("logs/passwd").exists() && !dir.path().parent().unwrap().join("escape").exists());

        // A link already at a name is neither written through nor entered.
        for name in ["victim", "out/planted"] {
            let refused = unpack(tar(&[(name, tar::EntryType::Regular, b"owned", None)]).as_slice(), dir.path(), None).unwrap_err();
            assert!(refused.contains("link") || refused.contains("Too many levels"), "{name}: {refused}");
        }
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "nothing was written outside");
    }
}
