//! `provision cp SERVICE:PATH LOCAL` and `provision cp LOCAL SERVICE:PATH`:
//! files between this machine and a service's container, as `docker cp`
//! does. Out of a container, what is written here is checked entry by
//! entry (`unpack`); into one, only the regular files and folders of LOCAL
//! go, never `.provision/` (the project's secret key and state).

use std::{
    io::Read,
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
    process::ExitCode,
};

use super::{args::CpArgs, project_containers, service_container};
use crate::{plan::policy::is_absolute, unpack};

/// One end of a copy.
enum End<'a> {
    Here(&'a Path),
    /// (service, absolute container path)
    There(&'a str, &'a str),
}

fn end(arg: &str) -> End<'_> {
    match arg.split_once(':') {
        Some((service, path)) if crate::stack::valid_service_name(service) && !service.contains('/') => End::There(service, path),
        _ => End::Here(Path::new(arg)),
    }
}

pub async fn run(args: CpArgs) -> miette::Result<ExitCode> {
    let (project, engine, containers) = project_containers(&args.project).await?;
    let usage = || {
        miette::miette!(
            help = "e.g. `provision cp db:/backups/app.sql .` or `provision cp seed.sql db:/tmp/`",
            "one end is SERVICE:PATH, the other a path here"
        )
    };
    match (end(&args.from), end(&args.to)) {
        (End::There(service, path), End::Here(local)) => {
            check_path(path)?;
            let c = service_container(&project, &containers, service, args.container.as_deref())?;
            // Into a file first: what the engine sends may be large.
            let mut tar = tempfile::tempfile().map_err(|e| miette::miette!("a temporary file: {e}"))?;
            engine.get_archive(&c.id, path, &mut tar, unpack::MAX_BYTES).await?;
            std::io::Seek::rewind(&mut tar).map_err(|e| miette::miette!("{e}"))?;
            let (dest, root) = destination(local)?;
            let done =
                unpack::unpack(tar, &dest, root.as_deref()).map_err(|e| miette::miette!("copying {service}:{path} to {}: {e}", local.display()))?;
            for skipped in &done.skipped {
                eprintln!("not copied: {}", crate::ui::printable(skipped));
            }
            eprintln!("copied {} ({} bytes) from {service}:{path} to {}", files(done.files), done.bytes, local.display());
        }
        (End::Here(local), End::There(service, path)) => {
            check_path(path.trim_end_matches('/'))?;
            let c = service_container(&project, &containers, service, args.container.as_deref())?;
            // `cp file db:/tmp/` puts /tmp/file; `cp file db:/tmp/x.sql` puts /tmp/x.sql.
            let target = if path.ends_with('/') {
                let real = local.canonicalize().map_err(|e| miette::miette!("{}: {e}", local.display()))?;
                let name = real.file_name().and_then(|n| n.to_str()).ok_or_else(|| miette::miette!("{}: name a file or folder", local.display()))?;
                format!("{path}{name}")
            } else {
                path.to_string()
            };
            let (archive, count, skipped) = pack(local, &target).map_err(|e| miette::miette!("{}: {e}", local.display()))?;
            for s in &skipped {
                eprintln!("not copied: {s}");
            }
            engine.put_archive(&c.id, archive).await?;
            eprintln!("copied {} from {} to {service}:{target}", files(count), local.display());
        }
        _ => return Err(usage()),
    }
    Ok(ExitCode::SUCCESS)
}

fn check_path(path: &str) -> miette::Result<()> {
    if !is_absolute(path) || path == "/" {
        return Err(miette::miette!(help = "e.g. /var/lib/postgresql/backup.sql", "{path:?} is not an absolute path in the container (no . or ..)"));
    }
    Ok(())
}

/// Where what comes out goes: into LOCAL when it is a folder, else as LOCAL.
fn destination(local: &Path) -> miette::Result<(PathBuf, Option<String>)> {
    if std::fs::symlink_metadata(local).is_ok_and(|m| m.is_dir()) {
        return Ok((local.to_path_buf(), None));
    }
    let parent = local.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = local.file_name().and_then(|n| n.to_str()).ok_or_else(|| miette::miette!("{}: name a file or folder here", local.display()))?;
    if !parent.is_dir() {
        return Err(miette::miette!("{} is not a folder: make it first", parent.display()));
    }
    Ok((parent.to_path_buf(), Some(name.to_string())))
}

/// A tar of `local` (a file, or a folder and all it holds) named under
/// `target`: regular files and folders only, links not followed.
fn pack(local: &Path, target: &str) -> Result<(Vec<u8>, usize, Vec<String>), String> {
    let mut tar = tar::Builder::new(Vec::new());
    let (mut count, mut skipped) = (0, Vec::new());
    let mut todo = vec![(local.to_path_buf(), target.trim_start_matches('/').to_string())];
    while let Some((path, name)) = todo.pop() {
        let meta = std::fs::symlink_metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut header = tar::Header::new_gnu();
        header.set_mode(meta.mode() & 0o777);
        header.set_mtime(meta.mtime().max(0) as u64);
        if meta.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            tar.append_data(&mut header, &name, std::io::empty()).map_err(|e| e.to_string())?;
            for entry in std::fs::read_dir(&path).map_err(|e| format!("{}: {e}", path.display()))? {
                let entry = entry.map_err(|e| e.to_string())?;
                let file = entry.file_name().to_string_lossy().into_owned();
                if file == ".provision" {
                    skipped.push(format!("{}: the project's secret key and state stay here", entry.path().display()));
                    continue;
                }
                todo.push((entry.path(), format!("{name}/{file}")));
            }
        } else if meta.is_file() {
            let mut contents = Vec::new();
            let mut file =
                std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            file.read_to_end(&mut contents).map_err(|e| format!("{}: {e}", path.display()))?;
            header.set_size(contents.len() as u64);
            tar.append_data(&mut header, &name, contents.as_slice()).map_err(|e| e.to_string())?;
            count += 1;
        } else {
            skipped.push(format!("{}: a link or special file", path.display()));
        }
    }
    Ok((tar.into_inner().map_err(|e| e.to_string())?, count, skipped))
}

fn files(n: usize) -> String {
    if n == 1 { "1 file".into() } else { format!("{n} files") }
}
