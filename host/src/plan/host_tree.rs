//! Files and folders on the host that a plan names — build contexts, the
//! contents of binds handed over by copy, init scripts hashed for a
//! snapshot — read safely, whatever a container did to them meanwhile.
//!
//! The path is the one `plan` resolved and checked (links followed then).
//! It is opened again one component at a time, none followed if it is a
//! link, so a folder swapped for a link since makes the read fail instead
//! of sending another part of the host. Inside the tree every step is taken
//! from the folder's open handle in the same way: links are kept as links
//! (the engine gets them as links), only regular files and folders are
//! read (a FIFO, device or socket is refused by name, as one would block or
//! never end), a file is read exactly to the size it has when opened, and
//! the whole tree is bounded in bytes and entries. The project's
//! `.provision` and `.git` folders are never part of a tree.

use std::{
    ffi::{CStr, OsStr},
    fs::File,
    io::{Read, Write},
    os::{
        fd::{AsFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::{Component, Path},
};

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags};

use super::host_path::HIDDEN;

/// How much one tree may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub bytes: u64,
    pub entries: usize,
}

impl Limits {
    /// A build context: what `docker build` would send, bounded.
    pub const CONTEXT: Limits = Limits { bytes: 1 << 30, entries: 500_000 };
    /// A bind's contents copied into a container, or hashed for a snapshot.
    pub const COPY: Limits = Limits { bytes: 64 << 20, entries: 20_000 };
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Folder,
    File { size: u64 },
    Link(String),
}

#[derive(Debug, Clone)]
pub struct Entry {
    /// Relative to the root, with `/`; empty for a root that is a file.
    pub path: String,
    pub kind: Kind,
    /// Permission bits and type, as lstat gives them.
    pub mode: u32,
    pub mtime: u64,
    pub uid: u32,
    pub gid: u32,
}

/// Which entries a walk leaves out: `excluded(path)`, and for an excluded
/// folder whether to look inside it anyway (`.dockerignore`'s `!`).
pub struct Filter<'a> {
    pub excluded: &'a dyn Fn(&str) -> bool,
    pub look_inside: &'a dyn Fn(&str) -> bool,
}

impl Filter<'_> {
    pub const ALL: Filter<'static> = Filter { excluded: &|_| false, look_inside: &|_| false };
}

/// A folder (or one file) on the host, listed.
pub struct Tree {
    root: OwnedFd,
    /// Sorted by path; a root that is a file is one entry with an empty path.
    pub entries: Vec<Entry>,
}

impl Tree {
    /// List the tree at `real`, an absolute path with no link in it (as
    /// `host_path::resolve` gives it).
    pub fn open(real: &Path, filter: &Filter, limits: Limits) -> Result<Tree, String> {
        let root = open_plain(real)?;
        let stat = rustix::fs::fstat(&root).map_err(|e| format!("{}: {e}", real.display()))?;
        let mut entries = Vec::new();
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => {
                let size = stat.st_size as u64;
                if size > limits.bytes {
                    return Err(format!("{} is larger than {}", real.display(), provision_registry::files::size(limits.bytes)));
                }
                entries.push(entry(String::new(), Kind::File { size }, &stat));
            }
            FileType::Directory => walk(&root, filter, limits, &mut entries)?,
            other => return Err(format!("{} is {}, not a file or folder", real.display(), kind_name(other))),
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Tree { root, entries })
    }

    /// Whether the root is a single file.
    pub fn is_file(&self) -> bool {
        matches!(&self.entries[..], [Entry { path, kind: Kind::File { .. }, .. }] if path.is_empty())
    }

    /// The file at `path` in the tree, opened with no link followed, with
    /// its size now. Refused if it is no longer a regular file.
    pub fn open_file(&self, path: &str) -> Result<(File, u64), String> {
        let fd = if path.is_empty() {
            self.root.try_clone().map_err(|e| e.to_string())?
        } else {
            let mut dir = self.root.try_clone().map_err(|e| e.to_string())?;
            let mut parts = path.split('/').peekable();
            loop {
                let part = parts.next().expect("a path has a last part");
                if parts.peek().is_none() {
                    break open_at(&dir, part, false).map_err(|e| format!("{path}: {e}"))?;
                }
                dir = open_at(&dir, part, true).map_err(|e| format!("{path}: {e}"))?;
            }
        };
        let stat = rustix::fs::fstat(&fd).map_err(|e| format!("{path}: {e}"))?;
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => Ok((File::from(fd), stat.st_size as u64)),
            other => Err(format!("{path} is {} now, no longer a regular file", kind_name(other))),
        }
    }

    /// Hash every file and link as `build_context` always has: path, mode
    /// and contents (a link's target), in path order. Folders do not count.
    pub fn hash_into(&self, hasher: &mut impl sha2::Digest) -> Result<(), String> {
        let mut buffer = vec![0u8; 64 << 10];
        for entry in &self.entries {
            let mut head = |len: u64| {
                hasher.update((entry.path.len() as u64).to_be_bytes());
                hasher.update(entry.path.as_bytes());
                hasher.update(entry.mode.to_be_bytes());
                hasher.update(len.to_be_bytes());
            };
            match &entry.kind {
                Kind::Folder => {}
                Kind::Link(target) => {
                    head(target.len() as u64);
                    hasher.update(target.as_bytes());
                }
                Kind::File { .. } => {
                    let (file, size) = self.open_file(&entry.path)?;
                    head(size);
                    let mut exact = Exact::new(file, size, &entry.path);
                    loop {
                        let n = exact.read(&mut buffer).map_err(|e| e.to_string())?;
                        if n == 0 {
                            break;
                        }
                        hasher.update(&buffer[..n]);
                    }
                }
            }
        }
        Ok(())
    }

    /// Append the tree to a tar under `prefix` (files, links and, with
    /// `folders`, folders), each file read exactly to its size when opened.
    /// `replace` gives other contents for one path (a Dockerfile with its
    /// base images substituted).
    pub fn append_to<W: Write>(
        &self,
        archive: &mut tar::Builder<W>,
        prefix: &str,
        folders: bool,
        replace: Option<(&str, &[u8])>,
    ) -> Result<(), String> {
        let name = |path: &str| match (prefix.trim_end_matches('/'), path) {
            (p, "") => p.to_string(),
            ("", path) => path.to_string(),
            (p, path) => format!("{p}/{path}"),
        };
        for entry in &self.entries {
            let mut header = tar::Header::new_gnu();
            header.set_mode(entry.mode & 0o7777);
            header.set_mtime(entry.mtime);
            header.set_uid(u64::from(entry.uid));
            header.set_gid(u64::from(entry.gid));
            let appended = match &entry.kind {
                Kind::Folder if !folders => continue,
                Kind::Folder => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    archive.append_data(&mut header, name(&entry.path), std::io::empty())
                }
                Kind::Link(target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    archive.append_link(&mut header, name(&entry.path), target)
                }
                Kind::File { .. } => match replace.filter(|(path, _)| *path == entry.path) {
                    Some((_, bytes)) => {
                        header.set_size(bytes.len() as u64);
                        archive.append_data(&mut header, name(&entry.path), bytes)
                    }
                    None => {
                        let (file, size) = self.open_file(&entry.path)?;
                        header.set_size(size);
                        archive.append_data(&mut header, name(&entry.path), Exact::new(file, size, &entry.path))
                    }
                },
            };
            appended.map_err(|e| format!("{}: {e}", entry.path))?;
        }
        Ok(())
    }
}

/// `real` opened with no link followed at any component: each is opened
/// from the one before with O_NOFOLLOW (and O_NONBLOCK, so a FIFO put at
/// the end does not block the open).
pub fn open_plain(real: &Path) -> Result<OwnedFd, String> {
    if !real.is_absolute() {
        return Err(format!("{} is not an absolute path", real.display()));
    }
    let changed = |e: rustix::io::Errno| {
        if e == rustix::io::Errno::LOOP || e == rustix::io::Errno::NOTDIR {
            format!("{}: a folder on the way was replaced by a link since it was checked; refusing to follow it", real.display())
        } else {
            format!("{}: {e}", real.display())
        }
    };
    let mut fd = rustix::fs::openat(CWD, "/", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(changed)?;
    let parts: Vec<&OsStr> = real.components().filter_map(|c| if let Component::Normal(part) = c { Some(part) } else { None }).collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | if last { OFlags::NONBLOCK } else { OFlags::DIRECTORY };
        fd = rustix::fs::openat(&fd, *part, flags, Mode::empty()).map_err(changed)?;
    }
    Ok(fd)
}

fn open_at(dir: &OwnedFd, name: &str, folder: bool) -> Result<OwnedFd, String> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | if folder { OFlags::DIRECTORY } else { OFlags::NONBLOCK };
    rustix::fs::openat(dir, name, flags, Mode::empty()).map_err(|e| match e {
        rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => "it was replaced by a link or another kind of file since it was listed".to_string(),
        e => e.to_string(),
    })
}

fn walk(root: &OwnedFd, filter: &Filter, limits: Limits, entries: &mut Vec<Entry>) -> Result<(), String> {
    let mut bytes = 0u64;
    // Folders still to list, each with its path; a stack, not recursion:
    // a tree may be deeper than the host's own stack.
    let mut folders = vec![(root.try_clone().map_err(|e| e.to_string())?, String::new())];
    while let Some((dir, at)) = folders.pop() {
        let names = rustix::fs::Dir::read_from(&dir).map_err(|e| format!("{}: {e}", shown(&at)))?;
        for name in names {
            let name = name.map_err(|e| format!("{}: {e}", shown(&at)))?;
            let name = name.file_name();
            if [c".", c".."].contains(&name) {
                continue;
            }
            let Ok(text) = std::str::from_utf8(name.to_bytes()) else {
                return Err(format!("{}: a file name that is not UTF-8 ({:?})", shown(&at), OsStr::from_bytes(name.to_bytes())));
            };
            if HIDDEN.contains(&text) {
                continue;
            }
            let path = if at.is_empty() { text.to_string() } else { format!("{at}/{text}") };
            let excluded = (filter.excluded)(&path);
            let stat = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| format!("{path}: {e}"))?;
            let kind = match FileType::from_raw_mode(stat.st_mode) {
                FileType::Directory => {
                    if !excluded || (filter.look_inside)(&path) {
                        folders.push((open_at(&dir, text, true).map_err(|e| format!("{path}: {e}"))?, path.clone()));
                    }
                    if excluded {
                        continue;
                    }
                    Kind::Folder
                }
                _ if excluded => continue,
                FileType::RegularFile => {
                    bytes += stat.st_size as u64;
                    if bytes > limits.bytes {
                        return Err(format!("it holds more than {} of files (at {path})", provision_registry::files::size(limits.bytes)));
                    }
                    Kind::File { size: stat.st_size as u64 }
                }
                FileType::Symlink => Kind::Link(link_target(&dir, name, &path)?),
                other => {
                    return Err(format!(
                        "{path} is {}: only files, folders and links can be handed over; remove it (or leave it out in .dockerignore)",
                        kind_name(other)
                    ));
                }
            };
            entries.push(entry(path, kind, &stat));
            if entries.len() > limits.entries {
                return Err(format!("it holds more than {} files and folders", limits.entries));
            }
        }
    }
    Ok(())
}

fn link_target(dir: &OwnedFd, name: &CStr, path: &str) -> Result<String, String> {
    let target = rustix::fs::readlinkat(dir.as_fd(), name, Vec::new()).map_err(|e| format!("{path}: {e}"))?;
    target.into_string().map_err(|_| format!("{path}: a link whose target is not UTF-8"))
}

fn entry(path: String, kind: Kind, stat: &rustix::fs::Stat) -> Entry {
    Entry { path, kind, mode: stat.st_mode, mtime: stat.st_mtime.max(0) as u64, uid: stat.st_uid, gid: stat.st_gid }
}

fn shown(path: &str) -> &str {
    if path.is_empty() { "." } else { path }
}

fn kind_name(kind: FileType) -> &'static str {
    match kind {
        FileType::Fifo => "a FIFO",
        FileType::CharacterDevice | FileType::BlockDevice => "a device",
        FileType::Socket => "a socket",
        FileType::Symlink => "a link",
        FileType::Directory => "a folder",
        FileType::RegularFile => "a file",
        _ => "of an unknown kind",
    }
}

/// Reads exactly `size` bytes: a file that grows is read to the size it had
/// (the tar header says it), one that shrinks fails the read (the header
/// would lie).
struct Exact<'a> {
    file: std::io::Take<File>,
    left: u64,
    path: &'a str,
}

impl<'a> Exact<'a> {
    fn new(file: File, size: u64, path: &'a str) -> Self {
        Exact { file: file.take(size), left: size, path }
    }
}

impl Read for Exact<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        if n == 0 && self.left > 0 {
            return Err(std::io::Error::other(format!("{} got shorter while it was read", self.path)));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tree: &Tree) -> Vec<&str> {
        tree.entries.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn a_tree_lists_files_folders_and_links_never_hidden_folders() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(root.join(".provision")).unwrap();
        std::fs::create_dir_all(root.join("a/.git")).unwrap();
        std::fs::write(root.join(".provision/secret-key"), "k").unwrap();
        std::fs::write(root.join("a/b/f"), "hello").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("a/link")).unwrap();
        let tree = Tree::open(&root, &Filter::ALL, Limits::COPY).unwrap();
        assert_eq!(names(&tree), ["a", "a/b", "a/b/f", "a/link"]);
        assert_eq!(tree.entries[3].kind, Kind::Link("/etc/passwd".into()));
        let (mut file, size) = tree.open_file("a/b/f").unwrap();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        assert_eq!((text.as_str(), size), ("hello", 5));
        assert!(tree.open_file("a/link").unwrap_err().contains("replaced by a link"), "a link is not followed");
    }

    #[test]
    fn special_files_are_refused_by_name_and_sizes_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let fifo = std::ffi::CString::new(root.join("pipe").as_os_str().as_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let err = Tree::open(&root, &Filter::ALL, Limits::COPY).err().unwrap();
        assert!(err.contains("pipe is a FIFO"), "{err}");
        let skip = Filter { excluded: &|p| p == "pipe", look_inside: &|_| false };
        assert!(Tree::open(&root, &skip, Limits::COPY).is_ok(), "an excluded FIFO is never opened");

        std::fs::write(root.join("big"), vec![0u8; 2048]).unwrap();
        let small = Limits { bytes: 1024, entries: 10 };
        assert!(Tree::open(&root, &skip, small).err().unwrap().contains("more than 1 KiB"));
        assert!(Tree::open(&root.join("big"), &Filter::ALL, small).err().unwrap().contains("larger than 1 KiB"));
    }

    #[test]
    fn a_folder_swapped_for_a_link_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("data/sub")).unwrap();
        let checked = root.join("data/sub");
        // What a container with a writable bind of `data` can do between
        // the check and the read.
        std::fs::remove_dir(&checked).unwrap();
        std::os::unix::fs::symlink("/etc", &checked).unwrap();
        let err = Tree::open(&checked, &Filter::ALL, Limits::COPY).err().unwrap();
        assert!(err.contains("replaced by a link"), "{err}");
        let swapped_parent = root.join("moved");
        std::fs::rename(root.join("data"), &swapped_parent).unwrap();
        std::os::unix::fs::symlink(&swapped_parent, root.join("data")).unwrap();
        assert!(open_plain(&root.join("data")).unwrap_err().contains("replaced by a link"));
    }

    #[test]
    fn a_file_that_shrinks_while_read_fails_the_tar() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::write(root.join("f"), "0123456789").unwrap();
        let tree = Tree::open(&root, &Filter::ALL, Limits::COPY).unwrap();
        std::fs::write(root.join("f"), "01234").unwrap();
        // Opened now at 5 bytes: the tar says 5.
        let mut archive = tar::Builder::new(Vec::new());
        tree.append_to(&mut archive, "x", false, None).unwrap();
        let bytes = archive.into_inner().unwrap();
        let mut read = tar::Archive::new(bytes.as_slice());
        let sizes: Vec<u64> = read.entries().unwrap().map(|e| e.unwrap().header().size().unwrap()).collect();
        assert_eq!(sizes, [5]);
        let (file, _) = tree.open_file("f").unwrap();
        let mut exact = Exact::new(file, 10, "f");
        assert!(std::io::copy(&mut exact, &mut std::io::sink()).unwrap_err().to_string().contains("got shorter"));
    }
}
