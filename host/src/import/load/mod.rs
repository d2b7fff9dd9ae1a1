//! Reading a Compose project the way `docker compose config` does: every
//! `-f` file merged over the one before, YAML anchors and `<<` merge keys,
//! `${VAR}` interpolation (the environment, then `--env-file` or the
//! project's `.env`), `include`, `extends` (same file or another), `!reset`
//! and `!override`, the project's name and its active profiles
//! (`-p`/`--profile`, else COMPOSE_PROJECT_NAME/COMPOSE_PROFILES).
//!
//! No compose crate reads real files whole (merge keys, `develop:`,
//! `dockerfile_inline`, short `extends` and unset variables trip them), so
//! this works on the YAML tree itself. Short forms are normalised to long
//! ones as each file is read and relative paths made absolute against the
//! file's own project folder, so files from different folders merge
//! without losing where their paths point.

mod interpolate;
mod merge;
mod normalise;
mod yaml;

use std::{
    cell::RefCell,
    path::{Path, PathBuf},
};

use serde_yaml_ng::{Mapping, Value};

use crate::stack::Variables;

use interpolate::{Notes, interpolate};
use merge::{merge_service, merge_top, take_mapping, untag};
use normalise::{absolute, normalise};
use yaml::nesting;
pub(super) use yaml::{other_keys, scalar, sequence, strings};

/// A compose project, merged and normalised.
pub struct Compose {
    /// `-p`, else COMPOSE_PROJECT_NAME, else the top-level `name` (the last
    /// file's that gives one), else none (the folder's is used).
    pub name: Option<String>,
    /// The project folder: that of the first file.
    pub dir: PathBuf,
    pub services: Mapping,
    pub networks: Mapping,
    pub volumes: Mapping,
    pub configs: Mapping,
    pub secrets: Mapping,
    /// The profiles active by default: `--profile`, else COMPOSE_PROFILES.
    pub profiles: Vec<String>,
    /// Key paths whose values were interpolated at import (frozen), with
    /// the variables they read; and unset variables read as "".
    pub frozen: Vec<String>,
    pub unset: Vec<String>,
}

/// How to read a project.
pub struct Reading<'a> {
    pub env_file: Option<&'a Path>,
    /// `--profile`: active by default (else COMPOSE_PROFILES).
    pub profiles: &'a [String],
    /// `-p`: the project's name (else COMPOSE_PROJECT_NAME, …).
    pub project_name: Option<&'a str>,
    /// Leave `${VAR}` in the strings stack.toml takes as they are
    /// (environment, command, entrypoint, health-check test), so a secret
    /// is read when the stack runs, not written into the file.
    pub keep_variables: bool,
}

/// The files compose reads when none is named, in its order of preference.
const DEFAULT_FILES: &[&str] = &["compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"];
const OVERRIDE_FILES: &[&str] = &["compose.override.yaml", "compose.override.yml", "docker-compose.override.yaml", "docker-compose.override.yml"];

/// The files to read: those named, else compose's default file in `dir`
/// and its override file beside it.
pub fn default_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let first = DEFAULT_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("no compose file in {}: looked for {}; name one with -f", dir.display(), DEFAULT_FILES.join(", ")))?;
    let mut files = vec![first];
    files.extend(OVERRIDE_FILES.iter().map(|f| dir.join(f)).find(|p| p.is_file()));
    Ok(files)
}

/// Reads and merges `files` (at least one).
pub fn load(files: &[PathBuf], how: &Reading) -> Result<Compose, String> {
    let first = files.first().ok_or("no compose file given")?;
    let dir = first.canonicalize().map_err(|e| format!("{}: {e}", first.display()))?.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut variables = match how.env_file {
        Some(path) => Variables::with_file(path, true)?,
        None => Variables::with_file(&dir.join(".env"), false)?,
    };
    // The name first: compose lets every file read ${COMPOSE_PROJECT_NAME}.
    let name = match how.project_name.map(str::to_string).or_else(|| variables.value("COMPOSE_PROJECT_NAME").filter(|n| !n.is_empty())) {
        Some(name) => Some(name),
        None => declared_name(files, &variables)?,
    };
    let folder = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // As compose normalises it: lower case, `[a-z0-9_-]` kept.
    let normalised: String =
        name.as_deref().unwrap_or(&folder).to_lowercase().chars().filter(|c| c.is_ascii_alphanumeric() || "_-".contains(*c)).collect();
    variables.set("COMPOSE_PROJECT_NAME", &normalised);
    let profiles = if how.profiles.is_empty() {
        variables.value("COMPOSE_PROFILES").unwrap_or_default().split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_string).collect()
    } else {
        how.profiles.to_vec()
    };
    let reader = Reader { variables: &variables, keep: how.keep_variables, notes: RefCell::default() };
    let mut project = Mapping::new();
    for file in files {
        // Paths in every -f file are relative to the project folder.
        let top = reader.file(file, &dir, &mut Vec::new())?;
        merge_top(&mut project, top, file)?;
    }
    untag(&mut project);
    let Notes { mut frozen, mut unset } = reader.notes.into_inner();
    for list in [&mut frozen, &mut unset] {
        list.sort();
        list.dedup();
    }
    Ok(Compose {
        name,
        dir,
        services: take_mapping(&mut project, "services"),
        networks: take_mapping(&mut project, "networks"),
        volumes: take_mapping(&mut project, "volumes"),
        configs: take_mapping(&mut project, "configs"),
        secrets: take_mapping(&mut project, "secrets"),
        profiles,
        frozen,
        unset,
    })
}

/// The top-level `name` of the last file that gives one, interpolated.
fn declared_name(files: &[PathBuf], variables: &Variables) -> Result<Option<String>, String> {
    let mut name = None;
    for file in files {
        let text = provision_registry::files::read_regular_text(file, provision_registry::files::MAX_TEXT_BYTES)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        nesting(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        let top: Value = serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        if let Some(given) = top.get("name").and_then(Value::as_str) {
            name = Some(variables.interpolate(given).map_err(|e| format!("{}: `name`: {e}", file.display()))?);
        }
    }
    Ok(name)
}

struct Reader<'a> {
    variables: &'a Variables,
    keep: bool,
    notes: RefCell<Notes>,
}

impl Reader<'_> {
    /// One file with its includes and extends resolved, paths absolute
    /// against `project_dir`. `chain` holds the files being read (cycles).
    fn file(&self, path: &Path, project_dir: &Path, chain: &mut Vec<PathBuf>) -> Result<Mapping, String> {
        let path = path.canonicalize().map_err(|e| format!("{}: {e}", path.display()))?;
        if chain.contains(&path) {
            let cycle: Vec<String> = chain.iter().chain([&path]).map(|p| p.display().to_string()).collect();
            return Err(format!("compose files include or extend each other in a cycle: {}", cycle.join(" → ")));
        }
        chain.push(path.clone());
        let mut top = self.raw(&path, project_dir)?;
        let own_dir = path.parent().unwrap_or(project_dir).to_path_buf();

        // `include`: each entry is a project of its own, from its own folder.
        for (i, entry) in sequence(top.remove("include")).into_iter().enumerate() {
            let (paths, dir) = match &entry {
                Value::String(p) => (vec![p.clone()], None),
                Value::Mapping(m) => (strings(m.get("path")), m.get("project_directory").and_then(Value::as_str).map(str::to_string)),
                _ => return Err(format!("{}: include.{i}: expected a path or {{ path, project_directory }}", path.display())),
            };
            let mut included = Mapping::new();
            for p in paths {
                let file = own_dir.join(&p);
                let dir = dir.as_ref().map(|d| own_dir.join(d)).unwrap_or_else(|| file.parent().unwrap_or(&own_dir).to_path_buf());
                let part = self.file(&file, &dir, chain)?;
                merge_top(&mut included, part, &file)?;
            }
            // An included service may not be redefined: compose refuses it too.
            for key in ["services", "networks", "volumes", "configs", "secrets"] {
                let Some(Value::Mapping(theirs)) = included.remove(key) else { continue };
                let ours = top.entry(key.into()).or_insert_with(|| Value::Mapping(Mapping::new()));
                let Value::Mapping(ours) = ours else { continue };
                for (name, value) in theirs {
                    if key == "services" && ours.contains_key(&name) {
                        return Err(format!(
                            "{}: service `{}` is defined here and in the file it includes (include.{i}); compose refuses that too",
                            path.display(),
                            name.as_str().unwrap_or_default()
                        ));
                    }
                    ours.entry(name).or_insert(value);
                }
            }
        }

        // `extends`: each service over the one it names, resolved in turn.
        if let Some(Value::Mapping(services)) = top.get("services").cloned() {
            let mut resolved = Mapping::new();
            for (name, _) in &services {
                let service = self.extended(&path, &services, name.as_str().unwrap_or_default(), project_dir, &mut Vec::new())?;
                resolved.insert(name.clone(), Value::Mapping(service));
            }
            top.insert("services".into(), Value::Mapping(resolved));
        }
        chain.pop();
        Ok(top)
    }

    /// A file as a tree: anchors and merge keys applied, interpolated,
    /// services normalised. Its `include` is left for `file`.
    fn raw(&self, path: &Path, project_dir: &Path) -> Result<Mapping, String> {
        let text = provision_registry::files::read_regular_text(path, provision_registry::files::MAX_TEXT_BYTES)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        nesting(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut value: Value = serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        value.apply_merge().map_err(|e| format!("{}: {e}", path.display()))?;
        let Value::Mapping(mut top) = value else {
            return Err(format!("{}: not a compose file (expected a mapping with `services`)", path.display()));
        };
        top.retain(|key, _| !key.as_str().is_some_and(|k| k.starts_with("x-")));
        interpolate(&mut top, self.variables, self.keep, &mut Vec::new(), &mut self.notes.borrow_mut())
            .map_err(|(at, e)| format!("{}: `{at}`: {e}", path.display()))?;
        if let Some(Value::Mapping(services)) = top.get_mut("services") {
            for (name, service) in services.iter_mut() {
                let name = name.as_str().unwrap_or_default().to_string();
                let Value::Mapping(service) = service else {
                    let what = if service.is_null() { "empty" } else { "not a mapping" };
                    return Err(format!("{}: `services.{name}` is {what}; compose refuses it too: give it an `image` or a `build`", path.display()));
                };
                normalise(service, project_dir).map_err(|e| format!("{}: `services.{name}.{e}", path.display()))?;
            }
        }
        for kind in ["configs", "secrets"] {
            let Some(Value::Mapping(items)) = top.get_mut(kind) else { continue };
            for (_, item) in items.iter_mut() {
                if let Some(Value::String(file)) = item.get_mut("file") {
                    *file = absolute(project_dir, file);
                }
            }
        }
        Ok(top)
    }

    /// `name` of `services` (from `path`) with its `extends` chain applied.
    fn extended(&self, path: &Path, services: &Mapping, name: &str, project_dir: &Path, seen: &mut Vec<String>) -> Result<Mapping, String> {
        let Some(Value::Mapping(service)) = services.get(name) else {
            return Err(format!("{}: `extends` names service `{name}`, which the file does not define", path.display()));
        };
        let mut service = service.clone();
        let Some(extends) = service.remove("extends") else { return Ok(service) };
        let key = format!("{}#{name}", path.display());
        if seen.contains(&key) {
            return Err(format!("{}: services extend each other in a cycle: {} → {name}", path.display(), seen.join(" → ")));
        }
        seen.push(key);
        let base_name = extends
            .get("service")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{}: `services.{name}.extends` names no service", path.display()))?;
        let base = match extends.get("file").and_then(Value::as_str) {
            None => self.extended(path, services, base_name, project_dir, seen)?,
            Some(file) => {
                let file = PathBuf::from(file);
                let file_dir = file.parent().unwrap_or(project_dir).to_path_buf();
                let other = self.raw(&file, &file_dir)?;
                let Some(Value::Mapping(theirs)) = other.get("services") else {
                    return Err(format!("{}: extended from {} has no services", path.display(), file.display()));
                };
                self.extended(&file, theirs, base_name, &file_dir, seen)?
            }
        };
        let mut merged = base;
        merge_service(&mut merged, service);
        Ok(merged)
    }
}
